"""A wall-clock step of a day, back and forth, under a real running agent (libfaketime, monotonic clock real):
no hang, no storm, no duplicate run. The agent samples every 5 s; the receiver counts what arrives, in real time."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.otlp_receiver import Receiver
from tests.pki import Pki, make_pki

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

pytestmark = pytest.mark.skipif(
    not LIBFAKETIME.exists() and os.environ.get("CI") != "true",
    reason="needs libfaketime (Debian package faketime; `make test` installs it as root, and CI runs this test)")


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="sgc-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def metric_arrivals(receiver: Receiver) -> int:
    return sum(1 for arrival in receiver.accepted for kind in arrival.kinds if kind == "metric")


def wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.1)  # this test process is not under libfaketime
    return False


def test_a_day_back_and_a_day_forward_neither_stall_nor_flood_the_schedule(agent_dir: Path) -> None:
    pki: Pki = make_pki(agent_dir / "pki", valid_days=3)  # the agent's clock moves a day either way
    shift = agent_dir / "faketime"
    shift.write_text("+0\n")
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(shift), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "DONT_FAKE_MONOTONIC": "1"}
    with Receiver(pki) as receiver:
        config = (f'[telemetry]\nendpoint = "{receiver.url}"\nca_file = "{pki.ca_cert}"\n'
                  f'client_cert = "{pki.client_cert}"\nclient_key = "{pki.client_key}"\ncollect_s = 5\npush_s = 5\n')
        agent = AgentProcess(agent_dir, config, env=env).start()
        try:
            assert wait_for(lambda: metric_arrivals(receiver) >= 1, 20), agent.log.read_text()
            for step in ("-1d", "+1d"):  # back a day (APScheduler alone would wait a day), then forward again
                before = metric_arrivals(receiver)
                shift.write_text(f"{step}\n")
                # the watch notices within 2 s and runs every job once; the push interval is 5 s
                assert wait_for(lambda b=before: metric_arrivals(receiver) > b, 15), agent.log.read_text()
                time.sleep(6)  # the test's own clock is real
                assert metric_arrivals(receiver) - before <= 4  # one run after the step, then the 5 s interval
        finally:
            assert agent.stop() == 0
        sequences = receiver.sequences()
        assert all(count == 1 for count in sequences.values())  # no duplicate delivery
        log = agent.log.read_text()
    assert "the wall clock stepped by -86400 s" in log or "stepped by -864" in log
    assert "Traceback" not in log
