"""The kill switch and service tasks end to end: a real `servicegate run`, the simulated modality
(portal/sim_modality.py) as the modality's tool, real task processes (tests/task_programs.py).

Every assertion is on an outcome: processes gone (psutil), the simulator's state (restores ran, block
released, protocol changed), the grant, the sessions, the audit log. Both containments run: cgroup v2
(the agent makes a cgroup per task; CI runs as root) and process group with the tag sweep.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from portal import sim_modality
from tests.agent_process import AgentProcess
from tests.task_programs import start_time
from tests.test_connection import wait_for

PROGRAMS = Path(__file__).with_name("task_programs.py")
SIM = [sys.executable, "-m", "portal.sim_modality"]


def catalog(pids: Path, sim_tool: list[str]) -> str:
    """The default catalog's modality tasks plus test programs: each writes its processes' pids into `pids`."""
    def program(kind: str, mode: str, extra: str = "", restore: str = "") -> str:
        argv = json.dumps([sys.executable, str(PROGRAMS), mode, str(pids)])
        lines = [f'[[task]]\nkind = "{kind}"\ntitle = "{kind}"\ncommand = {argv}\ntimeout_s = 600\n{extra}']
        if restore:
            lines.append(f"restore = {json.dumps([*sim_tool, 'restore', restore])}\n")
        return "".join(lines)

    from agent.tasks import DEFAULT_CATALOG

    return DEFAULT_CATALOG + "\n" + "\n".join([
        program("cooperative", "cooperative"),
        program("stubborn", "ignore-term", restore="diagnostics"),
        program("tree", "tree"),
        program("escape", "double-fork-setsid"),
        program("long-change", "cooperative", extra="changes_system = true\n", restore="config"),
    ])


def make_agent(root: Path, *, cgroups: bool, more_config: str = "") -> tuple[AgentProcess, Path, Path]:
    """An agent with the simulated modality and the test catalog; `more_config`: further agent.toml sections."""
    modality = root / "modality"
    sim_modality.init(modality, studies=1, images=2)
    pids = root / "pids"
    pids.mkdir()
    tool = [*SIM, "--state", str(modality)]
    (root / "catalog.toml").write_text(catalog(pids, tool))
    logs = modality / "logs"
    agent = AgentProcess(root, f'''
[tasks]
catalog = "{root / 'catalog.toml'}"
grace_s = 1
cgroups = {"true" if cgroups else "false"}
allowed_dirs = ["{logs}"]

[telemetry]
log_files = ["{logs / 'acquisition.log'}"]

[modality]
tool = {json.dumps(tool)}
block_lease_s = 3
block_renew_s = 1
{more_config}''')
    return agent, modality, pids


@pytest.fixture
def one(tmp_path: Path) -> Iterator[tuple[AgentProcess, Path, Path]]:
    """An agent for what does not depend on the containment (the cgroup one)."""
    agent, modality, pids = make_agent(tmp_path, cgroups=True)
    agent.start()
    try:
        yield agent, modality, pids
    finally:
        agent.stop()
        kill_leftovers(pids)


@pytest.fixture(params=["cgroup", "process-group"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AgentProcess, Path, Path, str]]:
    agent, modality, pids = make_agent(tmp_path, cgroups=request.param == "cgroup")
    agent.start()
    try:
        yield agent, modality, pids, request.param
    finally:
        agent.stop()
        kill_leftovers(pids)


def kill_leftovers(pids: Path) -> None:
    """Whatever a failed test left: never let it outlive the test."""
    for pid in alive(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def alive(pids: Path) -> list[int]:
    """The task processes whose pid files are in `pids` and that still run (same pid and start time)."""
    found = []
    for path in pids.glob("*.*"):
        if path.name.startswith("."):
            continue
        pid = int(path.name.rsplit(".", 1)[1])
        try:
            if start_time(pid) == int(path.read_text()) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return found


def full_session(agent: AgentProcess, kind: str = "service", level: str = "full") -> str:
    """An active session (under a standing grant: the portal may ask; FULL waits for the console's consent)."""
    agent.give_totp_secret()
    if agent.cli_json("access", "show")["level"] == "no-access":
        assert agent.cli("access", "set", "permanent-limited").returncode == 0
    session = agent.cli_json("session", "request", "--engineer-id", "E-1001", "--name", "Dana Field",
                             "--company", "Acme Imaging", "--reason", "detector calibration", "--level", level,
                             "--kind", kind)
    sid = str(session["id"])
    if session["state"] == "awaiting_consent":
        confirmed = agent.cli("session", "confirm", sid, "--accept-disclaimer")
        assert confirmed.returncode == 0, confirmed.stderr
    done = agent.cli("session", "authenticate", sid, "--code", agent.totp_code())
    assert done.returncode == 0, done.stderr
    if level == "full":  # tasks that need full access wait for the modality to confirm the block
        wait_for("the examination block", lambda: agent.cli_json("status")["examination_block"]["held"])
    return sid


def run_task(agent: AgentProcess, sid: str, kind: str, *params: str) -> dict[str, Any]:
    result = agent.cli("task", "run", kind, *params, "--session", sid, "--engineer-id", "E-1001", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def task(agent: AgentProcess, task_id: str) -> dict[str, Any]:
    return next(t for t in agent.cli_json("task", "list") if t["id"] == task_id)


def ended(agent: AgentProcess, task_id: str) -> dict[str, Any]:
    return dict(wait_for(f"task {task_id} to end", lambda: (t := task(agent, task_id))["state"] not in (
        "running", "waiting") and t))


def audit(agent: AgentProcess) -> list[dict[str, Any]]:
    return list(agent.cli_json("audit", "export"))


def test_kill_stops_twenty_tasks_of_every_kind_runs_restores_and_releases_the_block(
        setup: tuple[AgentProcess, Path, Path, str]) -> None:
    agent, modality, pids, containment = setup
    access = agent.cli("access", "set", "full")
    assert access.returncode == 0, access.stderr
    sid = full_session(agent)
    wait_for("the examination block", lambda: sim_modality.read_state(modality)["blocked"])
    kinds = ["cooperative"] * 8 + ["stubborn"] * 4 + ["tree"] * 4 + ["escape"] * 4
    runs = [run_task(agent, sid, kind) for kind in kinds]
    assert {r["state"] for r in runs} == {"running"}
    # cooperative 1, stubborn 1, tree 5 (main, 2 children, 2 grandchildren), escape 2 (main and the escapee)
    expected = 8 * 1 + 4 * 1 + 4 * 5 + 4 * 2
    wait_for("every task process to be ready", lambda: len(alive(pids)) == expected)

    killed = agent.cli("kill", "--reason", "patient arrived", "--json")
    assert killed.returncode == 0, killed.stderr

    assert alive(pids) == []
    records = audit(agent)
    kill = [r for r in records if r["event"] == "kill"][-1]["details"]
    assert kill["containment"] == containment
    assert sorted(kill["stopped_tasks"]) == sorted(r["id"] for r in runs)
    assert kill["remaining_pids"] == []
    assert kill["forced"] >= 4 + 4  # the stubborn ones and the escapees ignore SIGTERM
    assert kill["problems"] == []
    assert kill["block_released"] is True
    assert kill["ended_sessions"] == [sid]
    assert set(kill["restores"].values()) == {"", "ran"}
    state = sim_modality.read_state(modality)
    assert state["blocked"] is False
    assert [r["what"] for r in state["restores"]] == ["diagnostics"] * 4  # one per interrupted stubborn task
    assert agent.cli_json("access", "show")["level"] == "no-access"
    assert agent.cli_json("session", "list")[-1]["end_reason"] == "killed"
    task_ends = wait_for("every task's end", lambda: [r for r in audit(agent) if r["event"] == "task_ended"]
                         if len([r for r in audit(agent) if r["event"] == "task_ended"]) == 20 else None)
    assert {r["details"]["stop_reason"] for r in task_ends} == {"killed"}
    assert {r["details"]["state"] for r in task_ends} == {"stopped"}
    # The order of the story: access withdrawn, then the block released, then the session ended, then the record.
    # The order of the story: access withdrawn; every task stopped and restored; only then the block released; then
    # the session ended; then the record.
    events = [r["event"] for r in audit(agent)]
    start = events.index("task_allowed")
    story = [e for e in events[start:] if e in ("access_set", "examination_block_released", "session_ended", "kill")]
    assert story == ["access_set", "examination_block_released", "session_ended", "kill"]
    last_task_end = max(i for i, e in enumerate(events) if e == "task_ended")
    assert events.index("access_set", start) < events.index("task_ended", start)
    assert last_task_end < events.index("examination_block_released", start)
    # Pressing it again is harmless.
    again = agent.cli("kill", "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["stopped_tasks"] == []


def test_no_task_or_session_after_the_kill_and_tasks_refused_by_policy_are_audited(
        setup: tuple[AgentProcess, Path, Path, str]) -> None:
    agent, modality, _, _ = setup
    assert agent.cli("access", "set", "permanent-limited").returncode == 0
    sid = full_session(agent, level="limited")
    denied = agent.cli("task", "run", "restart-service", "service=reconstruction", "--session", sid,
                       "--engineer-id", "E-1001")
    assert denied.returncode == 1
    assert "needs full access" in denied.stderr
    assert sim_modality.read_state(modality)["services"]["reconstruction"]["restarts"] == 0
    injected = agent.cli("task", "run", "restart-service", "service=--help", "--session", sid,
                         "--engineer-id", "E-1001")
    assert injected.returncode == 2
    refused = [r["details"] for r in audit(agent) if r["event"] == "task_refused"]
    assert [r["kind"] for r in refused] == ["restart-service", "restart-service"]
    assert agent.cli("kill").returncode == 0
    after = agent.cli("task", "run", "system-report", "--session", sid, "--engineer-id", "E-1001")
    assert after.returncode == 1
    assert "active session" in after.stderr


def test_technical_and_system_tasks_act_on_the_modality_and_their_output_is_scrubbed(
        one: tuple[AgentProcess, Path, Path]) -> None:
    agent, modality, _ = one
    sid = full_session(agent)
    restart = ended(agent, run_task(agent, sid, "restart-service", "service=reconstruction")["id"])
    assert restart["state"] == "completed"
    assert sim_modality.read_state(modality)["services"]["reconstruction"]["restarts"] == 1
    diagnostics = ended(agent, run_task(agent, sid, "run-diagnostics", "suite=quick", "seconds=0")["id"])
    assert diagnostics["state"] == "completed"
    assert "ok" in diagnostics["stdout"]
    assert sim_modality.read_state(modality)["diagnostics"][-1]["finished"] is True
    logs = ended(agent, run_task(agent, sid, "collect-logs")["id"])
    assert logs["state"] == "completed"
    sent = {f["name"]: f for f in logs["files"]}
    assert sent["acquisition.log"]["handling"] == "scrubbed, sent"
    original = (modality / "logs" / "acquisition.log").read_text()
    patient = next(line for line in original.splitlines() if "Patient" in line)
    assert patient not in sent["acquisition.log"]["text"]
    assert "DOE" in original
    assert "DOE" not in sent["acquisition.log"]["text"]


def test_a_fetched_study_leaves_only_de_identified(one: tuple[AgentProcess, Path, Path]) -> None:
    agent, modality, _ = one
    sid = full_session(agent)
    study = sim_modality.read_state(modality)["studies"][0]
    fetched = ended(agent, run_task(agent, sid, "fetch-study", f"study_uid={study['study_uid']}")["id"])
    assert fetched["state"] == "completed"
    assert [f["handling"] for f in fetched["files"]] == ["de-identified, queued for upload"] * study["files"]
    queued = agent.cli_json("uploads")
    assert len(queued) == study["files"]
    assert {e["session_id"] for e in queued} == {sid}
    # Nothing with the patient's name is left in the task's folder, and every queued file is de-identified.
    name = study["patient_name"].encode()
    leftovers = [p for p in (agent.state / "tasks").rglob("*") if p.is_file() and name in p.read_bytes()]
    assert leftovers == []
    assert all(name not in Path(e["path"]).read_bytes() for e in queued)


def test_application_support_waits_for_the_technologist(one: tuple[AgentProcess, Path, Path]) -> None:
    agent, modality, _ = one
    sid = full_session(agent, kind="application-support", level="limited")
    asked = run_task(agent, sid, "adjust-protocol", "protocol=head-routine", "field=kv", "value=100")
    assert asked["state"] == "waiting"
    assert sim_modality.read_state(modality)["protocols"]["head-routine"]["kv"] != 100
    confirmed = agent.cli("task", "confirm", asked["id"])
    assert confirmed.returncode == 0, confirmed.stderr
    assert ended(agent, asked["id"])["state"] == "completed"
    assert sim_modality.read_state(modality)["protocols"]["head-routine"]["kv"] == 100
    declined = run_task(agent, sid, "adjust-protocol", "protocol=head-routine", "field=kv", "value=90")
    assert agent.cli("task", "decline", declined["id"]).returncode == 0
    assert task(agent, declined["id"])["state"] == "declined"
    assert sim_modality.read_state(modality)["protocols"]["head-routine"]["kv"] == 100


def test_lowering_the_grant_stops_only_the_tasks_above_it(setup: tuple[AgentProcess, Path, Path, str]) -> None:
    agent, modality, pids, _ = setup
    assert agent.cli("access", "set", "full").returncode == 0
    sid = full_session(agent)
    change = run_task(agent, sid, "long-change")
    technical = run_task(agent, sid, "cooperative")
    wait_for("both tasks", lambda: len(alive(pids)) == 2)
    assert agent.cli("access", "set", "permanent-limited").returncode == 0
    stopped = ended(agent, change["id"])
    assert (stopped["state"], stopped["stop_reason"]) == ("stopped", "revoked")
    assert stopped["restore"] == "ran"
    assert task(agent, technical["id"])["state"] == "running"
    assert [r["what"] for r in sim_modality.read_state(modality)["restores"]] == ["config"]
    wait_for("the block released (the session is no longer full)",
             lambda: not sim_modality.read_state(modality)["blocked"])


def test_sigusr1_is_the_kill_switch(setup: tuple[AgentProcess, Path, Path, str]) -> None:
    agent, _, pids, _ = setup
    sid = full_session(agent)
    run_task(agent, sid, "stubborn")
    wait_for("the task", lambda: len(alive(pids)) == 1)
    assert agent.process is not None
    agent.process.send_signal(signal.SIGUSR1)
    wait_for("the kill record", lambda: [r for r in audit(agent) if r["event"] == "kill"])
    assert alive(pids) == []
    assert agent.cli_json("session", "list")[-1]["end_reason"] == "killed"


def test_an_agent_killed_mid_session_never_leaves_the_scanner_blocked_or_a_task_running(tmp_path: Path) -> None:
    agent, modality, pids = make_agent(tmp_path, cgroups=True)
    agent.start()
    try:
        sid = full_session(agent)
        wait_for("the examination block", lambda: sim_modality.read_state(modality)["blocked"])
        run_task(agent, sid, "stubborn")
        run_task(agent, sid, "escape")
        wait_for("the tasks", lambda: len(alive(pids)) == 3)
        agent.stop(signal.SIGKILL)
        # The lease (3 s from the last renewal, at most 1 s before the crash) lapses by itself: nobody renews it.
        wait_for("the lease to lapse", lambda: not sim_modality.read_state(modality)["blocked"], timeout_s=3.5)
        agent.start()
        assert alive(pids) == []
        sessions = agent.cli_json("session", "list")
        assert (sessions[-1]["id"], sessions[-1]["end_reason"]) == (sid, "agent_restart")
        records = audit(agent)
        assert any(r["event"] == "task_leftovers_killed" for r in records)
        restarted = [r["details"] for r in records if r["event"] == "task_ended"]
        assert {(r["kind"], r["stop_reason"]) for r in restarted} == {("stubborn", "agent_restart"),
                                                                     ("escape", "agent_restart")}
        assert [r["what"] for r in sim_modality.read_state(modality)["restores"]] == ["diagnostics"]
    finally:
        agent.stop()
        kill_leftovers(pids)


def test_a_kill_interrupted_by_a_crash_is_finished_at_the_next_start(tmp_path: Path) -> None:
    agent, modality, pids = make_agent(tmp_path, cgroups=False)
    agent.start()
    try:
        assert agent.cli("access", "set", "full").returncode == 0
        sid = full_session(agent)
        run_task(agent, sid, "stubborn")
        wait_for("the task", lambda: len(alive(pids)) == 1)
        # The kill switch wrote its mark (its first step) when the agent died.
        (agent.state / "kill.json").write_text(json.dumps({"actor": "tech1", "text": "patient arrived"}))
        agent.stop(signal.SIGKILL)
        agent.start()
        kill = wait_for("the kill finished", lambda: [r for r in audit(agent) if r["event"] == "kill"])
        assert kill[-1]["actor"] == "tech1"
        assert "finished after a restart" in kill[-1]["details"]["text"]
        assert alive(pids) == []
        assert agent.cli_json("access", "show")["level"] == "no-access"
        assert agent.cli_json("session", "list")[-1]["end_reason"] == "killed"
        assert not (agent.state / "kill.json").exists()
        assert [r["what"] for r in sim_modality.read_state(modality)["restores"]] == ["diagnostics"]
        assert sim_modality.read_state(modality)["blocked"] is False
    finally:
        agent.stop()
        kill_leftovers(pids)


def test_the_unit_stop_hook_releases_the_block_without_an_agent(tmp_path: Path) -> None:
    agent, modality, _ = make_agent(tmp_path, cgroups=False)
    subprocess.run([*SIM, "--state", str(modality), "block", "--lease-s", "600"], check=True)
    assert agent.cli("examinations", "status").stdout.strip() == "blocked"
    released = agent.cli("examinations", "release")
    assert released.returncode == 0, released.stderr
    assert sim_modality.read_state(modality)["blocked"] is False
    assert agent.cli("examinations", "status").stdout.strip() == "unblocked"


def test_a_failing_step_is_recorded_and_the_kill_goes_on(tmp_path: Path) -> None:
    """The modality's tool refuses `unblock`: the kill switch still stops the task, ends the session and withdraws
    access; the failure is in the receipt (exit 3) and in the audit record."""
    agent, modality, pids = make_agent(tmp_path, cgroups=False)
    wrapper = tmp_path / "stubborn-tool.py"
    wrapper.write_text("import subprocess, sys\n"
                       "if sys.argv[1:2] == ['unblock']:\n"
                       "    sys.exit('unblock: the gantry controller does not answer')\n"
                       f"sys.exit(subprocess.call({SIM!r} + ['--state', {str(modality)!r}] + sys.argv[1:]))\n")
    config = agent.config.read_text()
    tool_line = next(line for line in config.splitlines() if line.startswith("tool = "))
    agent.config.write_text(config.replace(tool_line, f"tool = {json.dumps([sys.executable, str(wrapper)])}"))
    agent.start()
    try:
        sid = full_session(agent)
        run_task(agent, sid, "cooperative")
        wait_for("the task", lambda: len(alive(pids)) == 1)
        killed = agent.cli("kill", "--json")
        assert killed.returncode == 3, killed.stderr
        receipt = json.loads(killed.stdout)
        assert receipt["block_released"] is False
        assert any("gantry controller does not answer" in p for p in receipt["problems"])
        assert receipt["ended_sessions"] == [sid]
        assert alive(pids) == []
        assert agent.cli_json("access", "show")["level"] == "no-access"
        record = [r for r in audit(agent) if r["event"] == "kill"][-1]["details"]
        assert record["problems"] == receipt["problems"]
    finally:
        agent.stop()
        kill_leftovers(pids)
