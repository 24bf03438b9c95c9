"""The kill switch's latency: from calling `Runner.stop_all` to the last task process gone, for 20 tasks.

Two kinds of task, under both containments (cgroup v2 needs root; without it the cgroup rows say so):
- cooperative: each exits on SIGTERM (target <= 500 ms);
- ignoring SIGTERM: each needs SIGKILL after the grace period of 1 s (target <= grace + 200 ms).

The tasks are tests/task_programs.py processes. The time is measured around `stop_all`, which returns once it has
confirmed that no process of any task is left and the tasks are reported (main processes reaped, cgroups removed);
after each repetition every task process is checked to be gone (its pid no longer names a process with the same
start time), so a figure never stands for a process that was still there. Median and max over the repetitions.

`python -m benchmarks.kill_bench [--repetitions N]` prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agent.runner import Containment, Launch, Runner
from tests import task_programs

TASKS = 20
GRACE_S = 1.0
COOPERATIVE_TARGET_MS = 500
FORCED_MARGIN_MS = 200


def _ready(piddir: Path, timeout_s: float = 20) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        files = [f for f in piddir.iterdir() if not f.name.startswith(".")]
        if files:
            return int(files[0].name.rsplit(".", 1)[1]), int(files[0].read_text())
        if time.monotonic() > deadline:
            raise RuntimeError(f"kill bench: task {piddir.name} did not start")
        time.sleep(0.01)


def once(containment: Containment, mode: str, root: Path) -> float:
    """One stop_all of TASKS tasks of `mode`; its latency in seconds."""
    runner = Runner(f"bench-{uuid.uuid4().hex[:12]}", grace_s=GRACE_S, use_cgroup=containment == "cgroup")
    if runner.containment != containment:
        runner.close()
        raise RuntimeError(f"kill bench: no {containment} containment here (run as root with cgroup v2)")
    try:
        piddirs = []
        for n in range(TASKS):
            piddir = root / f"{mode}-{uuid.uuid4().hex[:8]}-{n}"
            piddir.mkdir()
            runner.start(Launch(f"task-{n}", (sys.executable, task_programs.__file__, mode, str(piddir)),
                                Path(task_programs.__file__).parent, {"PATH": os.environ.get("PATH", "/usr/bin")},
                                timeout_s=600, output_cap=4096))
            piddirs.append(piddir)
        procs = [_ready(piddir) for piddir in piddirs]
        began = time.perf_counter()
        report = runner.stop_all()
        elapsed = time.perf_counter() - began
        left = [pid for pid, start in procs if task_programs.start_time(pid) == start]
        if report.remaining or left or len(report.interrupted) != TASKS:
            raise RuntimeError(f"kill bench: {mode}/{containment} left {report.remaining or left}")
        return elapsed
    finally:
        runner.close()


def run(repetitions: int = 5) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="sg-kill-") as tmp:
        for mode, what, target_ms in (
                ("cooperative", f"{TASKS} cooperative tasks", COOPERATIVE_TARGET_MS),
                ("ignore-term", f"{TASKS} tasks ignoring SIGTERM, grace {GRACE_S:g} s",
                 GRACE_S * 1000 + FORCED_MARGIN_MS)):
            for containment in ("cgroup", "process-group"):
                try:
                    times = [once(containment, mode, Path(tmp)) * 1000 for _ in range(repetitions)]
                except RuntimeError as error:
                    rows.append((what, containment, "-", "-", f"<= {target_ms:.0f} ms", str(error)))
                    continue
                verdict = "met" if max(times) <= target_ms else "not met"
                rows.append((what, containment, f"{statistics.median(times):.0f} ms", f"{max(times):.0f} ms",
                             f"<= {target_ms:.0f} ms", verdict))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kill_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5, help="stop_all runs per row (default 5)")
    args = parser.parse_args(argv)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}; {args.repetitions} repetitions; command: `python -m benchmarks.kill_bench`\n")
    print("| kill switch: stop_all to last process gone | containment | median | max | target | |")
    print("|---|---|---|---|---|---|")
    for row in run(args.repetitions):
        print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
