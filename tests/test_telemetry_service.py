"""telemetry.service: the jobs, the wall-clock step watch (injected clocks), and a real APScheduler that starts,
runs, counts a failed run and stops within 2 s."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_ERROR

from telemetry.collectors import Collector
from telemetry.logtail import LogTail
from telemetry.outbox import Outbox
from telemetry.service import ClockWatch, Intervals, TelemetryService
from telemetry.thresholds import Rule, Thresholds


class Clocks:
    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 1000.0

    def advance(self, seconds: float, *, step: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + step


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite") as box:
        yield box


def service(outbox: Outbox, tmp_path: Path, rules: list[Rule], collector: Any = None,
            intervals: Intervals | None = None) -> TelemetryService:
    return TelemetryService(outbox, collector or Collector(outbox, boot_id=lambda: "boot-1"),
                            LogTail(outbox, [tmp_path / "modality.log"]), Thresholds(rules, outbox), None,
                            intervals or Intervals())


def test_the_clock_watch_tells_a_step_from_drift() -> None:
    clocks = Clocks()
    watch = ClockWatch(lambda: clocks.wall, lambda: clocks.mono)
    clocks.advance(2)
    assert watch.step() == 0.0
    clocks.advance(2, step=1.5)  # NTP slewing, a second and a half: not a step
    assert watch.step() == 0.0
    clocks.advance(2, step=-86_400)
    assert watch.step() == -86_400
    clocks.advance(2, step=86_400)
    assert watch.step() == 86_400
    clocks.advance(2)
    assert watch.step() == 0.0


def test_collect_queues_a_sample_and_an_alert_at_once(outbox: Outbox, tmp_path: Path) -> None:
    up = Rule("up", "system.uptime", ">", 0)  # always holds: fires on the first sample
    telemetry = service(outbox, tmp_path, [up])
    assert telemetry.collect() == 1
    kinds = [r.kind for r in outbox.batch()]
    assert kinds == ["alert", "metric"]
    assert telemetry.collect() == 0  # one alert per crossing


def test_a_clock_step_moves_every_job_to_now(outbox: Outbox, tmp_path: Path) -> None:
    telemetry = service(outbox, tmp_path, [], intervals=Intervals(collect_s=3600, logs_s=3600, push_s=3600))
    telemetry.start()
    try:
        for job in telemetry.scheduler.get_jobs():
            job.modify(next_run_time=datetime(2099, 1, 1, tzinfo=UTC))  # as after a step back: far away
        telemetry.on_clock_step(-86_400)
        assert all(job.next_run_time <= datetime.now(UTC) for job in telemetry.scheduler.get_jobs())
        assert telemetry.runs["clock_steps"] == 1
    finally:
        telemetry.stop()


def test_the_jobs_are_coalesced_single_and_graceful_and_stop_within_two_seconds(outbox: Outbox,
                                                                             tmp_path: Path) -> None:
    telemetry = service(outbox, tmp_path, [])
    telemetry.start()
    jobs = {job.id: job for job in telemetry.scheduler.get_jobs()}
    assert set(jobs) == {"collect", "logs", "push"}
    assert all(job.coalesce and job.max_instances == 1 for job in jobs.values())
    assert jobs["collect"].misfire_grace_time >= 30
    assert jobs["push"].misfire_grace_time >= 150
    started = time.monotonic()
    telemetry.stop()
    assert time.monotonic() - started < 2.0
    assert not telemetry.scheduler.running


def test_a_failed_run_is_counted_and_the_schedule_goes_on(outbox: Outbox, tmp_path: Path) -> None:
    class Broken:
        def sample(self) -> dict[str, Any]:
            raise OSError("sensor read failed")

        def stopped(self) -> None:
            pass

    telemetry = service(outbox, tmp_path, [], collector=Broken())
    failed = threading.Event()
    telemetry.scheduler.add_listener(lambda event: failed.set(), EVENT_JOB_ERROR)
    telemetry.start()
    try:
        telemetry.scheduler.get_job("collect").modify(next_run_time=datetime.now(UTC))
        assert failed.wait(10)
        assert telemetry.runs["failed:collect"] == 1
        assert telemetry.scheduler.get_job("collect") is not None  # still scheduled
    finally:
        telemetry.stop()


def test_the_first_sample_after_the_start_is_pushed_at_once_the_next_on_the_interval(
        outbox: Outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A started device is seen by the service centre (and `servicegate-install acceptance` finds telemetry arriving)
    without waiting for the push interval; later samples without an alert wait for it."""
    telemetry = service(outbox, tmp_path, [])
    pushes: list[str] = []
    monkeypatch.setattr(telemetry, "push_now", lambda: pushes.append("now"))  # what the scheduler would be told
    telemetry.collect()
    assert pushes == ["now"]
    telemetry.collect()
    assert pushes == ["now"]
