"""Service tasks in the agent's core with an injected clock (idle timeout, time limit) and a real runner with real
task processes (tests/task_programs.py): what happens to a session's tasks when it ends by the passing of time, a
task's own time-out and its restore, and a task whose output cannot be handled."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from agent.clock import ManualClock
from agent.config import Config, from_mapping
from agent.core import Agent
from agent.protocol import AccessLevel, EndReason, SessionState
from agent.runner import Runner
from tests.test_core import authenticate, request, start

PROGRAMS = Path(__file__).with_name("task_programs.py")


# The runner makes this process a child subreaper (as it does the agent); the other tests get it back.
pytestmark = pytest.mark.usefixtures("subreaper")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    pids = tmp_path / "pids"
    pids.mkdir()
    sleeper = json.dumps([sys.executable, str(PROGRAMS), "cooperative", str(pids)])
    short = json.dumps([sys.executable, str(PROGRAMS), "sleep", str(pids), "30"])
    restored = json.dumps(["/usr/bin/touch", str(tmp_path / "restored")])
    dicom = get_testdata_file("CT_small.dcm", download=False)  # pydicom's bundled CT image
    (tmp_path / "catalog.toml").write_text(f'''
[[task]]
kind = "sleeper"
title = "sleeps until stopped"
command = {sleeper}
restore = {restored}

[[task]]
kind = "short"
title = "times out"
command = {short}
timeout_s = 1
restore = {restored}

[[task]]
kind = "export"
title = "copies a DICOM file"
command = {json.dumps(["/bin/cp", str(dicom), "{output}"])}
patient_data = true
''')
    return from_mapping({"paths": {"state_dir": str(tmp_path / "state"), "control_socket": str(tmp_path / "c.sock")},
                         "tasks": {"catalog": str(tmp_path / "catalog.toml"), "grace_s": 1},
                         "sessions": {"idle_timeout_min": 15, "time_limit_min": 60}})


@pytest.fixture
def agent(config: Config) -> Iterator[Agent]:
    agent = start(config, ManualClock())
    runner = Runner(f"t{uuid.uuid4().hex[:10]}", grace_s=1, use_cgroup=False,
                    on_finished=lambda finished: agent.on_task_finished(finished))
    agent.runner = runner
    yield agent
    runner.close()


def active(agent: Agent, level: AccessLevel = AccessLevel.FULL) -> str:
    agent.set_access(AccessLevel.FULL, None, "tech1")
    session_id = request(agent, level)
    if agent.sessions[session_id].state is SessionState.AWAITING_CONSENT:
        agent.confirm_session(session_id, level, "tech1", True)
    authenticate(agent, session_id)
    return session_id


def ended(agent: Agent, task_id: str, timeout_s: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = agent.task_runs[task_id]
        if run.ended:
            return run.to_dict()
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end: {agent.task_runs[task_id]}")


def test_a_session_with_a_running_task_is_not_idle_and_its_time_limit_stops_the_task(agent: Agent,
                                                                                    tmp_path: Path) -> None:
    clock = agent.clock
    assert isinstance(clock, ManualClock)
    session_id = active(agent)
    run = agent.request_task(session_id, "E-1001", "sleeper", {}, "portal")
    clock.advance(timedelta(minutes=30))  # twice the idle timeout, with the task running
    agent.tick()
    assert agent.sessions[session_id].state is SessionState.ACTIVE
    clock.advance(timedelta(minutes=31))  # past the time limit: it ends, and so does the task
    agent.tick()
    assert agent.sessions[session_id].end_reason is EndReason.TIME_LIMIT
    stopped = ended(agent, run.id)
    assert (stopped["state"], stopped["stop_reason"], stopped["restore"]) == ("stopped", "time_limit", "ran")
    assert (tmp_path / "restored").exists()


def test_an_idle_session_ends_and_stops_a_waiting_task(agent: Agent) -> None:
    clock = agent.clock
    assert isinstance(clock, ManualClock)
    session_id = active(agent)
    run = agent.request_task(session_id, "E-1001", "short", {}, "portal")
    first = ended(agent, run.id)  # its own time-out (1 s, real time): stopped by the runner, restored
    assert (first["state"], first["stop_reason"], first["restore"]) == ("timeout", "timeout", "ran")
    clock.advance(timedelta(minutes=16))
    agent.tick()
    assert agent.sessions[session_id].end_reason is EndReason.IDLE_TIMEOUT


def test_a_task_whose_output_cannot_be_handled_ends_failed_and_keeps_nothing(agent: Agent, config: Config) -> None:
    # The anonymizer refuses a pseudonym key others may read (a real misconfiguration, not a mock).
    key = config.paths.anonymizer_key
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(b"k" * 32)
    key.chmod(0o644)
    session_id = active(agent)
    run = agent.request_task(session_id, "E-1001", "export", {}, "portal")
    done = ended(agent, run.id)
    assert done["state"] == "failed"
    assert "could not be handled" in str(done["stderr"])
    output = config.paths.state_dir / "tasks" / run.id / "output"
    assert not output.exists() or not any(output.iterdir())
    assert not (config.paths.state_dir / "uploads" / "queue.json").exists() or \
        json.loads((config.paths.state_dir / "uploads" / "queue.json").read_text()) == []
