"""What the agent costs the scanner while it only reports: a real `servicegate run` with telemetry at its default
intervals (collect and logs 60 s, push 300 s) beside Debian's `prometheus-node-exporter` scraped every 10 s, in
the same run, for `minutes` (default 10).

The agent pushes to a loopback OTLP receiver over mutual TLS (the tests' receiver, in a process of its own),
follows one log file that gets a line a second, and watches one process (the node exporter). Every 10 s the
node exporter is scraped and both processes' memory is sampled (RSS, PSS, USS from /proc/PID/smaps_rollup
through psutil); CPU is the user and system time each process used between the first sample (both running,
the agent's start done) and the last, as a percentage of one core. The agent's start-up CPU is shown apart.

PSS shares the pages of a file among the processes that map it, so the agent's PSS is lower while another
Python of the same interpreter runs (this benchmark's own process does); USS, the pages no other process shares,
is the floor of what stopping the agent would give back.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from benchmarks.telemetry_bench import start_sink
from tests.agent_process import AgentProcess

NODE_EXPORTER = "prometheus-node-exporter"
SCRAPE_S = 10
MIB = 1024 * 1024
PSS_TARGET_MB = 45
CPU_TARGET_PERCENT = 0.1


@dataclass
class Usage:
    """Peaks of the memory samples of one process, and its CPU time between the first and the last."""

    process: psutil.Process
    rss: int = 0
    pss: int = 0
    uss: int = 0
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    samples: list[int] = field(default_factory=list)

    def sample(self) -> None:
        memory = self.process.memory_full_info()
        self.rss, self.pss, self.uss = max(self.rss, memory.rss), max(self.pss, memory.pss), max(self.uss, memory.uss)
        self.samples.append(memory.pss)

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def percent(self, seconds: float) -> float:
        return 100 * (self.cpu_end - self.cpu_start) / seconds


def run(minutes: float = 10) -> list[tuple[str, ...]]:
    with tempfile.TemporaryDirectory(prefix="sg-idle-", dir="/tmp") as tmp:
        root = Path(tmp)
        sink, url, pki = start_sink(root / "pki", device_id="CT-BENCH")
        exporter = psutil.Popen([NODE_EXPORTER, "--web.listen-address=127.0.0.1:0"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        log_file = root / "modality.log"
        log_file.touch()
        (root / "agent").mkdir()
        agent = AgentProcess(root / "agent", (
            f'[telemetry]\nendpoint = "{url}"\nca_file = "{pki.ca_cert}"\nclient_cert = "{pki.client_cert}"\n'
            f'client_key = "{pki.client_key}"\nlog_files = ["{log_file}"]\nprocesses = ["{NODE_EXPORTER}"]\n'))
        try:
            agent.start()
            assert agent.process is not None
            scrape = f"http://127.0.0.1:{_listening_port(exporter)}/metrics"
            ours, theirs = Usage(psutil.Process(agent.process.pid)), Usage(exporter)
            startup_cpu = ours.cpu()
            requests.get(scrape, timeout=10).raise_for_status()
            ours.cpu_start, theirs.cpu_start = ours.cpu(), theirs.cpu()
            start = time.monotonic()
            ticks = int(minutes * 60 / SCRAPE_S)
            scraped = 0
            for tick in range(1, ticks + 1):
                for second in range(SCRAPE_S):
                    with log_file.open("a") as fh:
                        fh.write(f"2026-11-28 10:00:{second:02d} INFO reconstruction job {tick}.{second} finished\n")
                    time.sleep(max(0.0, start + (tick - 1) * SCRAPE_S + second + 1 - time.monotonic()))
                scraped += len(requests.get(scrape, timeout=10).content)
                ours.sample()
                theirs.sample()
            elapsed = time.monotonic() - start
            ours.cpu_end, theirs.cpu_end = ours.cpu(), theirs.cpu()
            status = agent.cli_json("telemetry", "status")
        finally:
            agent.stop()
            exporter.terminate()
            exporter.wait(timeout=10)
            assert sink.stdin is not None
            assert sink.stdout is not None
            sink.stdin.close()
            received = sink.stdout.readline().split()
            sink.wait(timeout=30)
    if minutes > 6 and (status.get("last_push") is None or not received or int(received[0]) == 0):
        raise RuntimeError(f"the agent delivered nothing during the benchmark: status {status}, receiver {received}")
    pss_ok = ours.pss / 1e6 <= PSS_TARGET_MB
    cpu_ok = ours.percent(elapsed) <= CPU_TARGET_PERCENT
    return [
        (f"peak PSS ({len(ours.samples)} samples)", f"{ours.pss / 1e6:.1f} MB", f"{theirs.pss / 1e6:.1f} MB",
         f"<= {PSS_TARGET_MB} MB: {'met' if pss_ok else 'not met'}"),
        ("peak RSS", f"{ours.rss / 1e6:.1f} MB", f"{theirs.rss / 1e6:.1f} MB", "-"),
        ("peak USS (private)", f"{ours.uss / 1e6:.1f} MB", f"{theirs.uss / 1e6:.1f} MB", "-"),
        (f"CPU over {elapsed / 60:.1f} min, % of one core", f"{ours.percent(elapsed):.3f} %",
         f"{theirs.percent(elapsed):.3f} %", f"<= {CPU_TARGET_PERCENT} %: {'met' if cpu_ok else 'not met'}"),
        ("CPU time of the start (imports, first sample)", f"{startup_cpu:.2f} s", "-", "-"),
        ("records delivered / metrics scraped", f"{received[0]} records", f"{scraped / 1e3:.0f} kB", "-"),
    ]


def _listening_port(process: psutil.Process, timeout_s: float = 10) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for connection in process.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN:
                return int(connection.laddr.port)
        time.sleep(0.1)
    raise RuntimeError(f"{NODE_EXPORTER} did not start listening (is the Debian package installed?)")
