"""`make bench`: throughput and latency of the agent's hot paths, each next to a peer that does the bare minimum.

The machine is shared and noisy, so each figure is shown with a ratio against a baseline measured
in the same run on the same files and socket:

- audit append (JSON line + SHA-256 chain + fsync)  vs  os.write + os.fsync of the same bytes
- audit verify (parse, chain, signatures)            vs  SHA-256 of every line of the same files
- control API `status` round trip (real daemon)     vs  a bare asyncio JSON-lines echo on a Unix socket

Prints a Markdown table; docs/performance.md keeps the figures with the command and the machine.

`python -m benchmarks` runs everything: the agent's figures above (a few seconds) and then the anonymizer against
its peers (`benchmarks.anonymizer_bench`: what each leaks, and speed on generated corpora; about five minutes, and
the first run creates the peers' venv `.bench-venv/`); between them the telemetry outbox's drain rate
(`benchmarks.telemetry_bench`) and the agent's idle cost beside prometheus-node-exporter (`benchmarks.idle_bench`,
ten minutes; `--minutes` changes that) and the kill switch's latency with 20 tasks (`benchmarks.kill_bench`, about
20 s) and the consent UI's banner latency (`benchmarks.ui_bench`, about 30 s). `--only agent`, `--only telemetry`,
`--only kill`, `--only ui`, `--only idle`, `--only anonymizer` (leaks and speed) or
`--only leaks` runs one part.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from agent.audit_log import AuditLog, public_key_path
from agent.audit_verify import verify
from agent.client import Client
from agent.clock import SystemClock
from tests.agent_process import AgentProcess

APPENDS = 2000
ROUND_TRIPS = 3000


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_audit(root: Path) -> list[tuple[str, str, str, str]]:
    audit_dir, key = root / "audit", root / "keys" / "audit-signing.key"
    log = AuditLog(audit_dir, key, SystemClock())
    details = {"session_id": "12345678", "engineer_id": "E-1001", "engineer_name": "Dana Example",
               "level": "limited", "reason": "gantry error 4711"}
    ours = timed(lambda: [log.append("session_active", "E-1001", details) for _ in range(APPENDS)])
    log.close()
    line = (json.dumps({"details": details, "event": "session_active", "prev": "0" * 64}) + "\n").encode()
    fd = os.open(root / "peer.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def peer_appends() -> None:
        for _ in range(APPENDS):
            os.write(fd, line)
            os.fsync(fd)

    peer = timed(peer_appends)
    os.close(fd)

    result = verify(audit_dir, public_key_path(key))
    if not result.ok:
        raise SystemExit(f"bench: verify failed on a fresh log: {result.problem}")
    files = sorted(audit_dir.glob("*.jsonl"))
    best_verify = min(timed(lambda: verify(audit_dir, public_key_path(key))) for _ in range(5))

    def peer_hash() -> None:
        for path in files:
            with path.open("rb") as handle:
                for raw in handle:
                    hashlib.sha256(raw.rstrip(b"\n")).hexdigest()

    best_hash = min(timed(peer_hash) for _ in range(5))
    n = result.records
    return [
        ("audit append, fsync each", f"{APPENDS / ours:,.0f} records/s", f"{APPENDS / peer:,.0f} writes/s",
         f"{ours / peer:.2f}x the time"),
        (f"audit verify, {n} records", f"{n / best_verify:,.0f} records/s", f"{n / best_hash:,.0f} lines/s",
         f"{best_verify / best_hash:.2f}x the time"),
    ]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            request = json.loads(line)
            writer.write(json.dumps({"id": request["id"], "ok": True, "result": {}}).encode() + b"\n")
            await writer.drain()
    except asyncio.CancelledError:
        pass  # the benchmark is over and stops the loop: a quiet end, not a logged error
    writer.close()


def echo_round_trips(path: Path) -> list[float]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(asyncio.start_unix_server(_echo, path=str(path)))
        ready.set()
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait()
    times = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        reader = sock.makefile("rb")
        for i in range(ROUND_TRIPS):
            start = time.perf_counter()
            sock.sendall(json.dumps({"v": 1, "id": i, "op": "status", "args": {}}).encode() + b"\n")
            reader.readline()
            times.append(time.perf_counter() - start)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    return times


def bench_control(root: Path) -> list[tuple[str, str, str, str]]:
    agent = AgentProcess(root).start()
    try:
        rss_mib = psutil.Process(agent.process.pid).memory_info().rss / 2**20 if agent.process else 0.0
        times = []
        with Client(agent.socket) as client:
            client.connect()
            for _ in range(ROUND_TRIPS):
                start = time.perf_counter()
                client.call("status")
                times.append(time.perf_counter() - start)
    finally:
        agent.stop()
    peer = echo_round_trips(root / "echo.sock")

    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1e6

    return [
        ("control `status` round trip, p50", f"{p(times, 50):.0f} µs", f"{p(peer, 50):.0f} µs",
         f"{p(times, 50) / p(peer, 50):.2f}x"),
        ("control `status` round trip, p99", f"{p(times, 99):.0f} µs", f"{p(peer, 99):.0f} µs",
         f"{p(times, 99) / p(peer, 99):.2f}x"),
        ("agent RSS after start", f"{rss_mib:.1f} MiB", "-", "-"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("agent", "telemetry", "kill", "ui", "idle", "anonymizer", "leaks"),
                        help="run one part: the agent's hot paths, the telemetry outbox's drain, the kill switch's "
                             "latency, the banner's latency, the agent's idle "
                             "cost beside prometheus-node-exporter, the anonymizer vs its peers (leaks and speed), "
                             "or the anonymizer's leak comparison alone")
    parser.add_argument("--minutes", type=float, default=10, help="how long the idle benchmark runs (default 10)")
    args = parser.parse_args(argv)
    if args.only in (None, "agent"):
        bench_agent()
    if args.only in (None, "telemetry"):
        from benchmarks import telemetry_bench

        figure, value, target, verdict = telemetry_bench.drain()
        print(f"\n| telemetry | figure | target | |\n|---|---|---|---|\n| {figure} | {value} | {target} | {verdict} |",
              flush=True)
    if args.only in (None, "kill"):
        from benchmarks import kill_bench

        print(f"\nThe kill switch: `Runner.stop_all` to the last task process gone, {kill_bench.TASKS} tasks, "
              "5 repetitions:\n", flush=True)
        print("| what | containment | median | max | target | |\n|---|---|---|---|---|---|")
        for row in kill_bench.run():
            print("| " + " | ".join(row) + " |", flush=True)
    if args.only in (None, "ui"):
        from benchmarks import ui_bench

        print("\nThe consent UI: the agent's session-active event to the banner painted (offscreen), 10 sessions:\n",
              flush=True)
        print("| consent UI | median | max | target | |\n|---|---|---|---|---|")
        for row in ui_bench.run():
            print("| " + " | ".join(row) + " |", flush=True)
    if args.only in (None, "idle"):
        from benchmarks import idle_bench

        print(f"\nThe agent with telemetry at its default intervals beside prometheus-node-exporter scraped every "
              f"{idle_bench.SCRAPE_S} s ({args.minutes:g} min):\n", flush=True)
        print("| what | ServiceGate agent | prometheus-node-exporter | target |\n|---|---|---|---|")
        for row in idle_bench.run(args.minutes):
            print("| " + " | ".join(row) + " |", flush=True)
    if args.only in (None, "anonymizer", "leaks"):
        from benchmarks import anonymizer_bench

        print(flush=True)
        command = "python -m benchmarks" + (f" --only {args.only}" if args.only else "")
        return anonymizer_bench.main(("leaks",) if args.only == "leaks" else ("leaks", "speed"), command)
    return 0


def bench_agent() -> None:
    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        root = Path(tmp)
        (root / "audit-bench").mkdir()
        (root / "agent-bench").mkdir()
        rows = bench_audit(root / "audit-bench") + bench_control(root / "agent-bench")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}; command: `make bench`\n")
    print("| what | ServiceGate | peer (bare minimum) | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
