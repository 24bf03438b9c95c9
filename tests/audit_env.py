"""The audit log's test set-up, shared by test_audit_log.py (the writer) and test_audit_verify.py (the reader).

A log in a temporary folder with a ManualClock, and histories written as the daemon writes them.
tests/conftest.py loads this module as a plugin, so its `env` fixture reaches both test files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.audit_log import DEFAULT_KEY_NAME, AuditLog, public_key_path
from agent.audit_verify import VerifyResult, verify
from agent.clock import ManualClock

START = datetime(2026, 10, 30, 22, 0, tzinfo=UTC)


@dataclass
class Env:
    root: Path
    clock: ManualClock

    @property
    def directory(self) -> Path:
        return self.root / "audit"

    @property
    def key(self) -> Path:
        return self.root / "keys" / DEFAULT_KEY_NAME

    @property
    def pub(self) -> Path:
        return public_key_path(self.key)

    def open(self, **kwargs: Any) -> AuditLog:
        return AuditLog(self.directory, self.key, self.clock, **kwargs)

    def verify(self) -> VerifyResult:
        return verify(self.directory, self.pub)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for _, line in read_lines(self.directory)]

    def segment_names(self) -> list[str]:
        return sorted(path.name for path in self.directory.glob("audit-*.jsonl"))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path, ManualClock(START))


def read_lines(directory: Path) -> list[tuple[str, bytes]]:
    """Every line of every segment, in log order, without newlines."""
    lines = []
    for path in sorted(directory.glob("audit-*.jsonl")):
        lines += [(path.name, line) for line in path.read_bytes().split(b"\n")[:-1]]
    return lines


def engineer_work(log: AuditLog, clock: ManualClock, count: int, step: timedelta) -> None:
    """Records as the daemon writes them, ticking every `step` as its timer would."""
    for n in range(count):
        log.append("session_started" if n % 2 == 0 else "task_run", f"eng-{n % 3}",
                   {"session_id": f"S-{n}", "engineer_id": f"eng-{n % 3}", "engineer_name": "Dana Smith",
                    "level": "LIMITED", "reason": "tube replacement", "task": "log_collect", "n": n})
        clock.advance(step)
        log.tick()


def build_history(env: Env, months: int, per_month: int = 4) -> None:
    """A log spanning `months` month boundaries, closed cleanly."""
    with env.open() as log:
        for _ in range(months):
            engineer_work(log, env.clock, per_month, timedelta(minutes=3))
            env.clock.advance(timedelta(days=30))
