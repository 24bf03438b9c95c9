"""agent.exam_block against a real tool: a small program whose answers the test switches through a file, and which
counts its calls. The renewals run in the block's own thread, so the test waits for calls, never for time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
import pytest

from agent.config import ModalityConfig
from agent.exam_block import ExamBlock, release, status
from tests.test_connection import wait_for

TOOL = """
import pathlib, sys
root = pathlib.Path(sys.argv[1])
with (root / "calls").open("a") as calls:
    calls.write(" ".join(sys.argv[2:]) + "\\n")
mode = (root / "mode").read_text().strip()
if mode == "orphan":  # leaves a child behind that outlives it (a vendor tool starting a helper)
    import subprocess
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"], start_new_session=False)
if mode == "fail":
    print("detector bus not answering", file=sys.stderr)
    sys.exit(1)
if sys.argv[2] == "block-status":
    print("maybe" if mode == "garbage" else "blocked")
"""


def tool(tmp_path: Path, mode: str) -> ModalityConfig:
    (tmp_path / "tool.py").write_text(TOOL)
    (tmp_path / "mode").write_text(mode)
    return ModalityConfig(tool=(sys.executable, str(tmp_path / "tool.py"), str(tmp_path)), block_lease_s=3,
                          block_renew_s=1, hook_timeout_s=5)


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_a_failing_tool_is_reported_once_per_streak_and_the_block_follows_the_wish(tmp_path: Path) -> None:
    problems: list[str] = []
    changes: list[bool] = []
    block = ExamBlock(tool(tmp_path, "fail"), on_problem=problems.append, on_change=changes.append)
    block.start()
    try:
        block.want(True)
        wait_for("three attempts", lambda: len(calls(tmp_path)) >= 3)
        assert len(problems) == 1
        assert "could not set the examination block" in problems[0]
        assert "detector bus not answering" in problems[0]
        assert block.held is False
        (tmp_path / "mode").write_text("ok")
        wait_for("the block held", lambda: block.held)
        assert changes == [True]
        assert calls(tmp_path)[-1] == "block --lease-s 3 --by servicegate"
        (tmp_path / "mode").write_text("fail")
        wait_for("a second failure streak", lambda: len(problems) == 2)
        assert "could not renew" in problems[1]
        (tmp_path / "mode").write_text("ok")
        block.want(False)
        wait_for("the release", lambda: not block.held)
        assert calls(tmp_path)[-1] == "unblock"
        assert changes == [True, False]
    finally:
        block.close()


def test_release_now_and_status(tmp_path: Path) -> None:
    config = tool(tmp_path, "ok")
    block = ExamBlock(config)
    assert block.release_now() == (True, "")
    assert calls(tmp_path) == ["unblock"]
    assert status(config) == "blocked"
    (tmp_path / "mode").write_text("garbage")
    assert status(config) == "unknown: maybe"
    (tmp_path / "mode").write_text("fail")
    ok, why = release(config)
    assert not ok
    assert "exit 1" in why
    assert "detector bus not answering" in why


def test_without_a_tool_nothing_is_called_and_nothing_fails() -> None:
    config = ModalityConfig()
    assert release(config) == (True, "no modality tool configured")
    assert status(config).startswith("unknown")
    block = ExamBlock(config)
    block.start()
    block.want(True)
    block.close()
    assert block.held is False


def zombies() -> list[int]:
    return [c.pid for c in psutil.Process(os.getpid()).children() if c.status() == psutil.STATUS_ZOMBIE]


@pytest.mark.usefixtures("subreaper")
def test_children_a_hook_leaves_behind_are_reaped_not_piled_up(tmp_path: Path) -> None:
    config = tool(tmp_path, "orphan")
    for _ in range(5):
        assert release(config)[0]
    orphans = [c for c in psutil.Process(os.getpid()).children() if c.status() != psutil.STATUS_ZOMBIE
               and "time.sleep(0.3)" in " ".join(c.cmdline())]
    assert orphans  # they re-parented to this process, as to the agent
    wait_for("the orphans to exit", lambda: all(not o.is_running() or o.status() == psutil.STATUS_ZOMBIE
                                                for o in orphans))
    assert set(zombies()) >= {o.pid for o in orphans}
    (tmp_path / "mode").write_text("ok")
    assert release(config)[0]  # the next call reaps what the earlier ones left
    assert not set(zombies()) & {o.pid for o in orphans}
