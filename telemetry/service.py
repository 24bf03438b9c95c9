"""Telemetry on a schedule: collect, read the logs, push; alerts sent at once; robust to wall-clock steps.

APScheduler 3.x runs three interval jobs (`Intervals`; each with jitter, `coalesce=True`, `max_instances=1` and a
misfire grace of half its interval): **collect** (a sample into the outbox, checked against the threshold rules;
an alert queues a push at once), **logs** (new lines of the configured files and of the journal) and **push**
(the shipper, when a receiver is configured; otherwise the outbox simply accumulates, bounded by its cap).
Listeners log and count missed and failed runs.

APScheduler 3 computes its waits from the wall clock, so after a step back every interval job would stall for as
long as the step. `ClockWatch`, on the monotonic clock, notices a step of either direction and the service then
moves every job's next run to now (one run each, no storm, no duplicate), which also wakes the scheduler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from telemetry.collectors import Collector
from telemetry.journal import JournalTail
from telemetry.logtail import LogTail
from telemetry.outbox import Outbox
from telemetry.shipper import Shipper
from telemetry.thresholds import Rule, Thresholds

log = logging.getLogger("servicegate.telemetry")

STEP_THRESHOLD_S = 5.0  # a difference between the clocks larger than this is a step, not drift
WATCH_PERIOD_S = 2.0


@dataclass(frozen=True)
class Intervals:
    collect_s: int = 60
    logs_s: int = 60
    push_s: int = 300
    jitter_s: int = 5


class ClockWatch:
    """Notices a wall-clock step by comparing the wall clock's progress with the monotonic clock's."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 threshold_s: float = STEP_THRESHOLD_S) -> None:
        self._wall, self._monotonic, self.threshold_s = wall, monotonic, threshold_s
        self._last = (wall(), monotonic())

    def step(self) -> float:
        """The step since the last call, in seconds (positive: forward); 0.0 when the clocks agree."""
        wall, mono = self._wall(), self._monotonic()
        last_wall, last_mono = self._last
        self._last = (wall, mono)
        difference = (wall - last_wall) - (mono - last_mono)
        return difference if abs(difference) > self.threshold_s else 0.0


class TelemetryService:
    def __init__(self, outbox: Outbox, collector: Collector, logtail: LogTail, thresholds: Thresholds,
                 shipper: Shipper | None, intervals: Intervals = Intervals(), *,
                 watch: ClockWatch | None = None, journal: JournalTail | None = None) -> None:
        self.outbox, self.collector, self.logtail, self.journal = outbox, collector, logtail, journal
        self.thresholds, self.shipper, self.intervals = thresholds, shipper, intervals
        self.watch = watch or ClockWatch()
        self.runs: Counter[str] = Counter()  # "missed:<job>", "failed:<job>", "clock_steps"
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._sampled = False  # the first sample is pushed at once
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)

    # ---- the jobs -------------------------------------------------------------------------------

    def collect(self) -> int:
        """One sample into the outbox; alerts for every crossing, and a push at once when there is one, or when it
        is the first sample since the start (the service centre sees a started device, and whatever waited while it
        was down, without waiting for the push interval)."""
        first = not self._sampled
        self._sampled = True
        sample = self.collector.sample()
        self.outbox.put("metric", sample)
        thresholds = self.thresholds  # one set of rules per sample, whatever `use_rules` does meanwhile
        alerts = thresholds.check(sample)
        thresholds.commit(alerts)
        if alerts:
            for alert in alerts:
                log.warning("threshold %s %s: %s = %s", alert["rule"], alert["state"], alert["metric"], alert["value"])
        if alerts or first:
            self.push_now()
        return len(alerts)

    def use_rules(self, rules: Sequence[Rule]) -> None:
        """New threshold rules (the vendor's configuration update) from the next sample on; what the old rules were
        watching is kept for the rules of the same name."""
        self.thresholds = Thresholds(rules, self.outbox)

    def logs(self) -> int:
        return self.logtail.poll() + (self.journal.poll() if self.journal is not None else 0)

    def push(self) -> None:
        if self.shipper is not None:
            result = self.shipper.push()
            if result.error is not None and result.error != "stopped":
                log.warning("telemetry push stopped: %s", result.error)

    def push_now(self) -> None:
        """Run the push job now (if the scheduler runs): alerts must not wait for the next interval."""
        job = self.scheduler.get_job("push") if self.scheduler.running else None
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    # ---- running --------------------------------------------------------------------------------

    def start(self) -> None:
        i = self.intervals
        for name, job, seconds in (("collect", self.collect, i.collect_s), ("logs", self.logs, i.logs_s),
                                   ("push", self.push, i.push_s)):
            self.scheduler.add_job(job, "interval", id=name, name=name, seconds=seconds, jitter=i.jitter_s,
                                   coalesce=True, max_instances=1, misfire_grace_time=max(1, seconds // 2 + 1),
                                   next_run_time=datetime.now(UTC) + timedelta(seconds=1))
        self.scheduler.start()
        self._watcher = threading.Thread(target=self._watch, name="telemetry-clock-watch", daemon=True)
        self._watcher.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop within `timeout_s`: no new runs; a push waiting to retry ends its wait at once."""
        self._stop.set()
        if self.shipper is not None:
            self.shipper.stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._watcher is not None:
            self._watcher.join(timeout=timeout_s)
        self.logtail.close()
        self.collector.stopped()

    def on_clock_step(self, step_s: float) -> None:
        """Every job runs once, now, and then on its interval from now."""
        self.runs["clock_steps"] += 1
        log.warning("the wall clock stepped by %+.0f s: rescheduling telemetry", step_s)
        now = datetime.now(UTC)
        for job in self.scheduler.get_jobs():
            job.modify(next_run_time=now)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_PERIOD_S):
            step = self.watch.step()
            if step:
                self.on_clock_step(step)

    def _on_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            self.runs[f"failed:{event.job_id}"] += 1
            log.error("telemetry job %s failed: %s: %s", event.job_id, type(event.exception).__name__,
                      event.exception)
        else:  # missed its time, or skipped because the previous run was still going
            self.runs[f"missed:{event.job_id}"] += 1
            log.warning("telemetry job %s did not run at its time (%s)", event.job_id,
                        "the previous run was still going" if event.code == EVENT_JOB_MAX_INSTANCES else "missed")
