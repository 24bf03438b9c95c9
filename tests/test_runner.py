"""agent.runner with real processes, under both containments: every test runs once with a cgroup (this machine and
CI run as root with cgroup v2, so it must really be "cgroup") and once with process groups.

The task programs (tests/task_programs.py) write a file per process with its pid and start time; a process is gone
when /proc/PID/stat no longer shows that start time (a reused pid is someone else). Gone means reaped: a zombie
still counts as there, so these tests also check that the runner reaps what it must.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.runner import Finished, Launch, Runner, RunnerError
from tests.task_programs import start_time

PROGRAM = Path(__file__).with_name("task_programs.py")
REPO = PROGRAM.parent.parent
GRACE_S = 0.3

Proc = tuple[int, int]  # pid, start time


# The runner makes this process a child subreaper; the rest of the test session gets it back as it was.
pytestmark = pytest.mark.usefixtures("subreaper")


def state(pid: int) -> str:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return "gone"
    return data[data.rindex(b")") + 2:].split()[0].decode()


def present(procs: list[Proc]) -> list[str]:
    """Those of `procs` still there (alive or zombie), as "pid (state)"."""
    return [f"{pid} ({state(pid)})" for pid, start in procs if start_time(pid) == start]


def assert_gone(procs: list[Proc]) -> None:
    assert procs
    assert present(procs) == []


@dataclass
class Harness:
    runner: Runner
    containment: str
    tag: str
    tmp: Path
    finished: dict[str, list[Finished]] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, finished: Finished) -> None:
        with self.changed:
            self.finished.setdefault(finished.task_id, []).append(finished)
            self.changed.notify_all()

    def launch(self, task_id: str, mode: str, *args: str, timeout_s: float = 30, output_cap: int = 4096,
               runner: Runner | None = None) -> Path:
        piddir = self.tmp / task_id
        piddir.mkdir()
        (runner or self.runner).start(Launch(
            task_id=task_id, argv=(sys.executable, str(PROGRAM), mode, str(piddir), *args), cwd=REPO,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout_s=timeout_s, output_cap=output_cap))
        return piddir

    def wait_finished(self, task_id: str, timeout_s: float = 10) -> Finished:
        with self.changed:
            assert self.changed.wait_for(lambda: task_id in self.finished, timeout=timeout_s), task_id
            return self.finished[task_id][0]


def ready(piddir: Path, count: int, timeout_s: float = 10) -> list[Proc]:
    """Wait until `count` processes of a task wrote their files; their (pid, start time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        files = [f for f in piddir.iterdir() if not f.name.startswith(".")]
        if len(files) >= count:
            return [(int(f.name.rsplit(".", 1)[1]), int(f.read_text())) for f in files]
        assert time.monotonic() < deadline, f"{piddir.name}: {len(files)} of {count} processes ready"
        time.sleep(0.01)


def roles(piddir: Path) -> dict[str, Proc]:
    return {f.name.rsplit(".", 1)[0]: (int(f.name.rsplit(".", 1)[1]), int(f.read_text()))
            for f in piddir.iterdir() if not f.name.startswith(".")}


@pytest.fixture(params=["cgroup", "process-group"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    tag = f"test-{uuid.uuid4().hex[:12]}"
    h = Harness(None, request.param, tag, tmp_path)  # type: ignore[arg-type]
    h.runner = Runner(tag, grace_s=GRACE_S, use_cgroup=request.param == "cgroup", on_finished=h.record)
    assert h.runner.containment == request.param
    yield h
    h.runner.close()
    assert h.runner.sweep() == ()  # nothing of this test's tag may be left
    base = cgroup_base(tag)
    if base is not None and base.exists():
        base.rmdir()
        pytest.fail(f"{base} was left behind")


def cgroup_base(tag: str) -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.startswith("cgroup2 "):
            own = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines()
                       if line.startswith("0::"))
            return Path(before.split(" ")[4]) / own.lstrip("/") / f"servicegate-{tag}"
    return None


def test_cooperative_task_stops_on_sigterm(harness: Harness) -> None:
    procs = ready(harness.launch("coop", "cooperative"), 1)
    cgroup = cgroup_base(harness.tag)
    if harness.containment == "cgroup":
        assert cgroup is not None
        assert str(procs[0][0]) in (cgroup / "coop" / "cgroup.procs").read_text().split()
    assert harness.runner.running() == ("coop",)
    assert harness.runner.stop("coop")
    finished = harness.wait_finished("coop", timeout_s=0)  # stop blocks until the task is reported
    assert (finished.outcome, finished.returncode) == ("stopped", 0)
    assert_gone(procs)
    assert harness.runner.running() == ()
    assert not harness.runner.stop("coop")
    if cgroup is not None:
        assert not cgroup.exists()  # the runner's cgroup directory exists only while it has tasks


def test_task_ignoring_sigterm_is_killed_after_the_grace_period(harness: Harness) -> None:
    procs = ready(harness.launch("stubborn", "ignore-term"), 1)
    report = harness.runner.stop_all()
    assert report.interrupted == ("stubborn",)
    assert report.forced == 1
    assert report.remaining == ()
    assert report.containment == harness.containment
    assert report.elapsed_s >= GRACE_S  # it had its grace period (how fast is measured by make bench)
    finished = harness.wait_finished("stubborn", timeout_s=0)
    assert (finished.outcome, finished.returncode) == ("stopped", -9)
    assert_gone(procs)


def test_children_and_grandchildren_are_stopped(harness: Harness) -> None:
    procs = ready(harness.launch("tree", "tree"), 5)
    report = harness.runner.stop_all()
    assert (report.interrupted, report.remaining, report.forced) == (("tree",), (), 0)  # SIGTERM was enough
    assert_gone(procs)
    assert harness.wait_finished("tree").outcome == "stopped"


def test_double_forked_setsid_escapee_is_found_and_killed(harness: Harness) -> None:
    piddir = harness.launch("escape", "double-fork-setsid")
    procs = ready(piddir, 3)  # main, intermediate (exited), escapee
    escapee, _ = roles(piddir)["escapee"]
    main, _ = roles(piddir)["main"]
    assert os.getsid(escapee) != os.getsid(main)
    assert os.getpgid(escapee) != os.getpgid(main)
    assert int(Path(f"/proc/{escapee}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()  # subreaper
    report = harness.runner.stop_all()
    assert (report.remaining, report.forced) == ((), 1)  # the escapee ignores SIGTERM
    assert_gone(procs)


def test_kill_switch_stops_twenty_tasks_with_one_grace_period(harness: Harness) -> None:
    modes = {"cooperative": 1, "ignore-term": 1, "tree": 5, "double-fork-setsid": 3}
    expected: list[tuple[Path, int]] = []
    for n in range(20):
        mode = list(modes)[n % 4]
        expected.append((harness.launch(f"task-{n}", mode), modes[mode]))
    procs = [proc for piddir, count in expected for proc in ready(piddir, count)]
    report = harness.runner.stop_all()
    assert sorted(report.interrupted) == sorted(f"task-{n}" for n in range(20))
    assert report.remaining == ()
    assert report.forced == 10  # 5 ignore-term mains and 5 escapees
    # One grace period for all, not one per task: ten tasks need SIGKILL, one after the other would take 10 x grace.
    assert report.elapsed_s < 10 * GRACE_S
    assert_gone(procs)
    assert {task_id: [f.outcome for f in fs] for task_id, fs in harness.finished.items()} == {
        f"task-{n}": ["stopped"] for n in range(20)}
    again = harness.runner.stop_all()
    assert (again.interrupted, again.remaining, again.forced) == ((), (), 0)


def test_timeout_stops_the_task(harness: Harness) -> None:
    procs = ready(harness.launch("slow", "ignore-term", timeout_s=0.5), 1)
    finished = harness.wait_finished("slow")
    assert (finished.outcome, finished.returncode) == ("timeout", -9)
    assert 0.5 <= finished.duration_s < 0.5 + GRACE_S + 1.5
    assert_gone(procs)


def test_exit_codes_give_completed_and_failed(harness: Harness) -> None:
    harness.launch("ok", "exit", "0")
    harness.launch("bad", "exit", "3")
    ok, bad = harness.wait_finished("ok"), harness.wait_finished("bad")
    assert (ok.outcome, ok.returncode) == ("completed", 0)
    assert (bad.outcome, bad.returncode) == ("failed", 3)
    assert harness.runner.running() == ()


def test_output_is_capped_and_the_rest_counted(harness: Harness) -> None:
    harness.launch("chatty", "chatty", "100000", output_cap=1000)
    finished = harness.wait_finished("chatty")
    assert finished.outcome == "completed"
    assert (finished.stdout, finished.stderr) == (b"o" * 1000, b"e" * 1000)
    assert finished.dropped == 2 * 99_000


def test_start_refuses_what_cannot_run(harness: Harness) -> None:
    def launch(task_id: str, argv: tuple[str, ...]) -> Launch:
        return Launch(task_id, argv, REPO, {}, 10, 100)

    with pytest.raises(RunnerError, match="does not exist"):
        harness.runner.start(launch("missing", ("/nonexistent/servicegate-tool", "--help")))
    with pytest.raises(RunnerError, match="absolute path"):
        harness.runner.start(launch("relative", ("python3", "-c", "pass")))
    with pytest.raises(RunnerError, match="task id"):
        harness.runner.start(launch("../evil", (sys.executable,)))
    script = harness.tmp / "script.py"
    script.write_text("pass\n")
    with pytest.raises(RunnerError, match="not executable"):
        harness.runner.start(launch("noexec", (str(script),)))
    procs = ready(harness.launch("twice", "cooperative"), 1)
    with pytest.raises(RunnerError, match="already running"):
        harness.runner.start(launch("twice", (sys.executable, "-c", "pass")))
    base = cgroup_base(harness.tag)
    if harness.containment == "cgroup":
        assert base is not None
        assert sorted(p.name for p in base.iterdir() if p.is_dir()) == ["twice"]
    harness.runner.stop_all()
    assert_gone(procs)


def test_leftover_descendants_are_killed_when_the_main_process_exits(harness: Harness) -> None:
    piddir = harness.launch("leaver", "leave-children")
    finished = harness.wait_finished("leaver")
    assert (finished.outcome, finished.returncode) == ("completed", 0)
    procs = ready(piddir, 7, timeout_s=0)
    assert_gone(procs)  # including the escapee that ignores SIGTERM
    assert harness.runner.running() == ()


def test_sweep_kills_what_an_earlier_runner_with_the_same_tag_left(harness: Harness) -> None:
    crashed_finished: list[Finished] = []
    crashed = Runner(harness.tag, grace_s=GRACE_S, use_cgroup=harness.containment == "cgroup",
                     on_finished=crashed_finished.append)
    procs = ready(harness.launch("tree", "tree", runner=crashed), 5)
    procs += ready(harness.launch("stubborn", "ignore-term", runner=crashed), 1)
    procs += ready(harness.launch("escape", "double-fork-setsid", runner=crashed), 3)
    del crashed  # dropped without stop or close, as by a crash: its tasks run on
    mine = ready(harness.launch("mine", "cooperative"), 1)

    killed = harness.runner.sweep()

    alive = {pid for pid, _ in procs if state(pid) != "gone"} - {pid for pid, _ in procs if state(pid) == "Z"}
    assert alive == set()
    assert set(killed) >= {roles(harness.tmp / "tree")["child0"][0], roles(harness.tmp / "escape")["escapee"][0],
                            roles(harness.tmp / "stubborn")["main"][0]}
    assert present(mine) != []  # this runner's own task is spared
    assert harness.runner.running() == ("mine",)
    deadline = time.monotonic() + 5
    while len(crashed_finished) < 3 and time.monotonic() < deadline:  # the dropped runner's watchers reap its mains
        time.sleep(0.01)
    assert sorted(f.task_id for f in crashed_finished) == ["escape", "stubborn", "tree"]
    assert_gone(procs)
    base = cgroup_base(harness.tag)
    if harness.containment == "cgroup":
        assert base is not None
        assert sorted(p.name for p in base.iterdir() if p.is_dir()) == ["mine"]


def test_reaping_never_takes_an_unrelated_childs_exit_code(harness: Harness) -> None:
    code = [sys.executable, "-c", "import sys; sys.exit(7)"]
    others = [subprocess.Popen(code), subprocess.Popen(code, start_new_session=True),
              subprocess.Popen(code, process_group=0)]
    deadline = time.monotonic() + 10
    while any(state(p.pid) != "Z" for p in others):  # exited, unreaped: exactly what a wrong waitpid would take
        assert time.monotonic() < deadline
        time.sleep(0.01)
    procs = ready(harness.launch("tree", "tree"), 5) + ready(harness.launch("escape", "double-fork-setsid"), 3)
    assert harness.runner.stop_all().remaining == ()
    assert_gone(procs)
    assert [p.wait(timeout=5) for p in others] == [7, 7, 7]


def test_stop_all_races_tasks_finishing_on_their_own(harness: Harness) -> None:
    for n in range(8):
        harness.launch(f"quick-{n}", "exit", str(n % 2))
    harness.launch("coop", "cooperative")
    time.sleep(0.05)  # some are exiting now
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(harness.runner.stop_all())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert [r.remaining for r in reports] == [(), ()]
    with harness.changed:
        assert harness.changed.wait_for(lambda: len(harness.finished) == 9, timeout=10)
    assert all(len(fs) == 1 for fs in harness.finished.values())  # exactly once each
    assert harness.finished["coop"][0].outcome == "stopped"
    for n in range(8):
        assert harness.finished[f"quick-{n}"][0].outcome in ("completed", "failed", "stopped")
    harness.launch("after", "exit", "0")  # the runner still starts tasks after the kill switch
    assert harness.wait_finished("after").outcome == "completed"


def test_a_failing_callback_is_logged_and_the_runner_goes_on(harness: Harness,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    def explode(finished: Finished) -> None:
        harness.record(finished)
        raise RuntimeError("callback bug")

    runner = Runner(f"{harness.tag}-cb", grace_s=GRACE_S, use_cgroup=harness.containment == "cgroup",
                    on_finished=explode)
    try:
        with caplog.at_level(logging.ERROR, logger="servicegate.runner"):
            harness.launch("one", "exit", "0", runner=runner)
            harness.wait_finished("one")
            harness.launch("two", "exit", "1", runner=runner)
            assert harness.wait_finished("two").outcome == "failed"
            time.sleep(0.05)
        assert "on_finished failed for task one" in caplog.text
    finally:
        runner.close()


def test_cgroup_holds_an_escapee_that_dropped_its_tag(tmp_path: Path) -> None:
    """A double-forked setsid process that re-executes with an empty environment leaves the process group, the
    session and the tag behind; only the cgroup still holds it (process-group containment cannot find it)."""
    h = Harness(None, "cgroup", f"test-{uuid.uuid4().hex[:12]}", tmp_path)  # type: ignore[arg-type]
    h.runner = Runner(h.tag, grace_s=GRACE_S, on_finished=h.record)
    try:
        assert h.runner.containment == "cgroup"
        piddir = h.launch("hidden", "hidden-escapee")
        procs = ready(piddir, 3)
        hidden, _ = roles(piddir)["hidden"]
        assert b"SERVICEGATE_TASK" not in Path(f"/proc/{hidden}/environ").read_bytes()
        report = h.runner.stop_all()
        assert (report.remaining, report.forced) == ((), 1)
        assert_gone(procs)
    finally:
        h.runner.close()


def test_without_cgroup2_the_runner_falls_back_to_process_groups_and_says_why(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("agent.runner._cgroup2_mount", lambda: None)
    with caplog.at_level(logging.WARNING, logger="servicegate.runner"):
        runner = Runner(f"test-{uuid.uuid4().hex[:12]}", grace_s=GRACE_S)
    try:
        assert runner.containment == "process-group"
        assert "falls back to process groups: no cgroup2 file system is mounted" in caplog.text
    finally:
        runner.close()
