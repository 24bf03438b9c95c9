"""What the device reports about itself: system statistics (psutil), modality process health, counters that
survive reboots, and reliability figures. No patient data: names of metrics, numbers, mount points, device
and interface names, process names from the configuration.

A sample is one outbox record of kind "metric": `{"time_unix_nano": ..., "points": [...]}`, each point a
`Point` (OpenTelemetry semantic-convention names where one exists: `system.cpu.utilization`,
`system.filesystem.usage`, ...; ServiceGate's own under `servicegate.`). See docs/telemetry.md for the list.

Counters that survive reboots live in the outbox database (`Outbox.facts`), written in the same durable way
as the records: system restarts (a new boot id), agent starts and failures (a start without a recorded clean
stop), modality process restarts (a process gone, or back with another start time), and the scans and errors
the modality reports to the agent (passed in as `counters`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import psutil

from telemetry.outbox import Outbox

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
STATE_KEY = "collector.state"
# Every metric a sample can hold (threshold rules may name only these; docs/telemetry.md lists them).
METRICS = frozenset({
    "system.cpu.utilization", "system.cpu.load_average.1m", "system.cpu.load_average.5m",
    "system.cpu.load_average.15m", "system.memory.usage", "system.memory.utilization", "system.paging.usage",
    "system.paging.utilization", "system.uptime", "system.filesystem.usage", "system.filesystem.utilization",
    "servicegate.filesystem.available", "system.disk.io", "system.network.io", "hw.temperature", "hw.fan.speed",
    "servicegate.modality.process.running", "servicegate.modality.process.restarts",
    "servicegate.modality.process.failures", "servicegate.modality.process.mtbf",
    "servicegate.modality.process.time_since_failure", "process.memory.usage", "process.cpu.time",
    "servicegate.system.restarts", "servicegate.agent.restarts", "servicegate.agent.failures",
    "servicegate.agent.mtbf", "servicegate.agent.time_since_failure", "servicegate.modality.scans",
    "servicegate.modality.errors",
})


@dataclass(frozen=True)
class Point:
    name: str
    value: float | int
    unit: str = ""
    kind: Literal["gauge", "counter"] = "gauge"
    attributes: dict[str, str] = field(default_factory=dict)
    start_unix_nano: int | None = None  # a counter's: since when it counts (boot, process start, first agent start)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def read_boot_id() -> str:
    """This boot's id (Linux); the boot time where there is none."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return f"boot-time-{psutil.boot_time():.0f}"


class Collector:
    """Samples the system. Create one per agent start: creating it counts the start (and, when the previous
    run ended without `stopped()`, a failure of the agent). Without an outbox (`servicegate telemetry collect
    --once`) nothing is counted or kept, and the sample leaves the counters that need a history out."""

    def __init__(self, outbox: Outbox | None, *, mounts: Sequence[str] = ("/",), processes: Sequence[str] = (),
                 counters: Callable[[], Mapping[str, int]] = dict, clock: Callable[[], float] = time.time,
                 boot_id: Callable[[], str] = read_boot_id) -> None:
        self.outbox, self.mounts, self.processes = outbox, list(mounts), list(processes)
        self._counters, self._clock = counters, clock
        self._state = self._load()
        now = clock()
        state = self._state
        state.setdefault("first_start", now)
        current_boot = boot_id()
        if state.get("boot_id") not in (None, current_boot):
            state["system_restarts"] = state.get("system_restarts", 0) + 1
            for record in state.get("processes", {}).values():
                record["started"] = None  # gone with the reboot: starting again after it is no failure
        state["boot_id"] = current_boot
        if state.get("running"):  # the previous run never said it stopped: it crashed or was killed
            state.setdefault("agent_failures", []).append(now)
        state["agent_starts"] = state.get("agent_starts", 0) + 1
        state["running"] = True
        self._save()
        psutil.cpu_percent(interval=None)  # primes the CPU figure: the first sample reports since now

    def stopped(self) -> None:
        """A clean stop of the agent: the next start is not a failure."""
        self._state["running"] = False
        self._save()

    def sample(self) -> dict[str, Any]:
        """One sample, ready for `outbox.put("metric", ...)`."""
        now = self._clock()
        points = [*self._system(now), *self._filesystems(), *self._network(), *self._sensors()]
        if self.outbox is not None:
            points += [*self._modality(now), *self._reliability(now)]
        else:
            points += [p for p in self._modality(now) if p.kind == "gauge" or p.name.startswith("process.")]
        for name, value in sorted(self._counters().items()):
            points.append(Point(f"servicegate.modality.{name}", int(value), "{event}", "counter"))
        # Since when each counter counts (OTLP's start time; without it every point would look like a reset):
        # the system's since boot, ServiceGate's since the agent first started on this device.
        boot, first = int(psutil.boot_time() * 1e9), int(self._state.get("first_start", now) * 1e9)
        points = [replace(p, start_unix_nano=boot if p.name.startswith("system.") else first)
                  if p.kind == "counter" and p.start_unix_nano is None else p for p in points]
        self._save()
        return {"time_unix_nano": int(now * 1e9), "points": [p.to_dict() for p in points]}

    # ---- the parts of a sample ------------------------------------------------------------------

    def _system(self, now: float) -> list[Point]:
        memory, swap = psutil.virtual_memory(), psutil.swap_memory()
        points = [
            Point("system.cpu.utilization", psutil.cpu_percent(interval=None) / 100, "1"),
            Point("system.memory.usage", memory.total - memory.available, "By", attributes={"state": "used"}),
            Point("system.memory.usage", memory.available, "By", attributes={"state": "available"}),
            Point("system.memory.utilization", round(1 - memory.available / memory.total, 4), "1"),
            Point("system.paging.usage", swap.used, "By", attributes={"state": "used"}),
            Point("system.paging.utilization", round(swap.percent / 100, 4), "1"),
            Point("system.uptime", round(now - psutil.boot_time(), 1), "s"),
        ]
        for minutes, load in zip((1, 5, 15), os.getloadavg(), strict=True):
            points.append(Point(f"system.cpu.load_average.{minutes}m", round(load, 2), "{thread}"))
        return points

    def _filesystems(self) -> list[Point]:
        devices = {p.mountpoint: os.path.basename(p.device) for p in psutil.disk_partitions(all=False)}
        io = psutil.disk_io_counters(perdisk=True) or {}
        points = []
        for mount in self.mounts:
            try:
                usage = psutil.disk_usage(mount)
            except OSError:
                points.append(Point("servicegate.filesystem.available", 0, "1", attributes={"mountpoint": mount}))
                continue
            where = {"mountpoint": mount}
            points += [Point("system.filesystem.usage", usage.used, "By", attributes={**where, "state": "used"}),
                       Point("system.filesystem.usage", usage.free, "By", attributes={**where, "state": "free"}),
                       Point("system.filesystem.utilization", round(usage.percent / 100, 4), "1", attributes=where),
                       Point("servicegate.filesystem.available", 1, "1", attributes=where)]
            counters = io.get(devices.get(mount, ""))
            if counters is not None:
                device = {**where, "device": devices[mount]}
                points += [Point("system.disk.io", counters.read_bytes, "By", "counter",
                                 {**device, "direction": "read"}),
                           Point("system.disk.io", counters.write_bytes, "By", "counter",
                                 {**device, "direction": "write"})]
        return points

    def _network(self) -> list[Point]:
        points = []
        for name, counters in sorted((psutil.net_io_counters(pernic=True) or {}).items()):
            if name == "lo":
                continue
            points += [Point("system.network.io", counters.bytes_recv, "By", "counter",
                             {"device": name, "direction": "receive"}),
                       Point("system.network.io", counters.bytes_sent, "By", "counter",
                             {"device": name, "direction": "transmit"})]
        return points

    @staticmethod
    def _sensors() -> list[Point]:
        """Temperatures and fans, where the platform reports them (often not in a virtual machine)."""
        points = []
        temperatures = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
        for chip, readings in sorted(temperatures.items()):
            for index, reading in enumerate(readings):
                label = reading.label or f"{chip}{index}"
                points.append(Point("hw.temperature", reading.current, "Cel", attributes={"sensor": label}))
        fans = psutil.sensors_fans() if hasattr(psutil, "sensors_fans") else {}
        for chip, speeds in sorted(fans.items()):
            for index, speed in enumerate(speeds):
                label = speed.label or f"{chip}{index}"
                points.append(Point("hw.fan.speed", speed.current, "rpm", attributes={"sensor": label}))
        return points

    def _modality(self, now: float) -> list[Point]:
        """Each configured modality process: running, restarts, memory, CPU time. A process that is gone, or
        back with another start time, counts as a restart (and a failure: it was not the agent's doing)."""
        if not self.processes:
            return []
        found: dict[str, psutil.Process] = {}
        for candidate in psutil.process_iter(["name", "create_time"]):
            name = candidate.info["name"]
            if name in self.processes and (name not in found or
                                           candidate.info["create_time"] < found[name].info["create_time"]):
                found[name] = candidate  # the oldest of that name: the modality's main process
        known: dict[str, Any] = self._state.setdefault("processes", {})
        points = []
        for name in self.processes:
            record = known.setdefault(name, {"started": None, "restarts": 0, "failures": []})
            process = found.get(name)
            started = process.info["create_time"] if process is not None else None
            if record["started"] is not None and started != record["started"]:  # gone, or another process now
                record["restarts"] += 1
                record["failures"].append(now)
            record["started"] = started
            attrs = {"process.executable.name": name}
            points += [Point("servicegate.modality.process.running", int(process is not None), "1", attributes=attrs),
                       Point("servicegate.modality.process.restarts", record["restarts"], "{restart}", "counter",
                             attrs)]
            if process is not None:
                try:
                    with process.oneshot():
                        rss = process.memory_info().rss
                        cpu = process.cpu_times()
                except psutil.Error:
                    continue  # it ended between the listing and now: the next sample sees that
                points += [Point("process.memory.usage", rss, "By", attributes=attrs),
                           Point("process.cpu.time", round(cpu.user + cpu.system, 2), "s", "counter", attrs,
                                 int(started * 1e9) if started is not None else None)]
            points += _reliability("servicegate.modality.process", record["failures"], self._state["first_start"],
                                   now, attrs)
        return points

    def _reliability(self, now: float) -> list[Point]:
        state = self._state
        return [
            Point("servicegate.system.restarts", state.get("system_restarts", 0), "{restart}", "counter"),
            Point("servicegate.agent.restarts", state["agent_starts"] - 1, "{restart}", "counter"),
            *_reliability("servicegate.agent", state.get("agent_failures", []), state["first_start"], now, {}),
        ]

    # ---- state ----------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        text = self.outbox.fact(STATE_KEY) if self.outbox is not None else None
        try:
            state = json.loads(text) if text else {}
        except ValueError:
            state = {}  # damaged: counting starts again, which the next sample shows
        return state if isinstance(state, dict) else {}

    def _save(self) -> None:
        if self.outbox is not None:
            self.outbox.set_fact(STATE_KEY, json.dumps(self._state, sort_keys=True))


def _reliability(prefix: str, failures: list[float], since: float, now: float,
                 attributes: dict[str, str]) -> list[Point]:
    """Failures counted, mean time between failures (observed time / failures) and time since the last one."""
    points = [Point(f"{prefix}.failures", len(failures), "{failure}", "counter", attributes)]
    if failures:
        points += [Point(f"{prefix}.mtbf", round((now - since) / len(failures), 1), "s", attributes=attributes),
                   Point(f"{prefix}.time_since_failure", round(now - failures[-1], 1), "s", attributes=attributes)]
    return points
