"""telemetry.collectors on this machine: real psutil figures, real modality processes, counters that survive
restarts of the agent (the outbox database reopened), an injected clock, and an injected boot id (a test
cannot reboot the machine it runs on)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from telemetry import otlp
from telemetry.collectors import METRICS, STATE_KEY, Collector
from telemetry.outbox import Outbox

REPO = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def values(sample: dict[str, Any], name: str, **attributes: str) -> list[Any]:
    return [p["value"] for p in sample["points"]
            if p["name"] == name and all(p["attributes"].get(k) == v for k, v in attributes.items())]


def one(sample: dict[str, Any], name: str, **attributes: str) -> Any:
    found = values(sample, name, **attributes)
    assert len(found) == 1, (name, attributes, found)
    return found[0]


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite") as box:
        yield box


def test_a_sample_has_the_systems_figures_and_is_valid_otlp(outbox: Outbox) -> None:
    sample = Collector(outbox, mounts=["/", "/no/such/mount"], counters=lambda: {"scans": 5, "errors": 1}).sample()
    assert 0 <= one(sample, "system.cpu.utilization") <= 1
    assert one(sample, "system.memory.usage", state="used") > 0
    assert 0 < one(sample, "system.memory.utilization") < 1
    assert one(sample, "system.filesystem.usage", mountpoint="/", state="free") > 0
    assert 0 < one(sample, "system.filesystem.utilization", mountpoint="/") < 1
    assert one(sample, "servicegate.filesystem.available", mountpoint="/no/such/mount") == 0
    assert one(sample, "system.uptime") > 0
    assert len(values(sample, "system.cpu.load_average.1m")) == 1
    assert values(sample, "system.network.io", direction="receive")  # every interface but lo
    assert not values(sample, "system.network.io", device="lo")
    assert (one(sample, "servicegate.modality.scans"), one(sample, "servicegate.modality.errors")) == (5, 1)
    assert {p["name"] for p in sample["points"]} <= METRICS  # what threshold rules may name
    counters = [p for p in sample["points"] if p["kind"] == "counter"]
    assert counters
    assert all(0 < p["start_unix_nano"] <= sample["time_unix_nano"] for p in counters)  # since when each counts
    sequence = outbox.put("metric", sample)
    document = otlp.metrics_request(outbox.batch(), {"service.name": "servicegate"})
    json_format.ParseDict(document, ExportMetricsServiceRequest())
    assert len(document["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]) == len(sample["points"])
    assert sequence == 1


def test_agent_restarts_and_failures_survive_in_the_outbox(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as outbox:
        first = Collector(outbox, clock=clock, boot_id=lambda: "boot-1")
        sample = first.sample()
        assert (one(sample, "servicegate.agent.restarts"), one(sample, "servicegate.agent.failures")) == (0, 0)
        assert not values(sample, "servicegate.agent.mtbf")
        first.stopped()  # a clean stop
    clock.now += 3600
    with Outbox(path) as outbox:
        sample = Collector(outbox, clock=clock, boot_id=lambda: "boot-1").sample()  # ... then it is killed
        assert (one(sample, "servicegate.agent.restarts"), one(sample, "servicegate.agent.failures")) == (1, 0)
    clock.now += 3600
    with Outbox(path) as outbox:
        collector = Collector(outbox, clock=clock, boot_id=lambda: "boot-1")
        clock.now += 600
        sample = collector.sample()
    assert (one(sample, "servicegate.agent.restarts"), one(sample, "servicegate.agent.failures")) == (2, 1)
    assert one(sample, "servicegate.agent.mtbf") == 2 * 3600 + 600  # observed time / failures
    assert one(sample, "servicegate.agent.time_since_failure") == 600


def test_system_restarts_are_counted_by_boot_id(outbox: Outbox) -> None:
    boots = iter(["boot-1", "boot-1", "boot-2", "boot-3"])
    for expected in (0, 0, 1, 2):
        sample = Collector(outbox, boot_id=lambda: next(boots)).sample()
        assert one(sample, "servicegate.system.restarts") == expected


def test_damaged_state_starts_counting_again_without_a_crash(outbox: Outbox) -> None:
    outbox.set_fact(STATE_KEY, "{not json")
    sample = Collector(outbox, boot_id=lambda: "boot-1").sample()
    assert one(sample, "servicegate.agent.restarts") == 0


def test_modality_processes_running_restarts_and_memory(tmp_path: Path, outbox: Outbox) -> None:
    """A real process stands in for the scanner software: a copy of `sleep` under a name of its own."""
    program = tmp_path / "sgmodality"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    clock = Clock()
    collector = Collector(outbox, processes=["sgmodality"], clock=clock, boot_id=lambda: "boot-1")
    running = subprocess.Popen([str(program), "600"])
    try:
        sample = collector.sample()
        name = {"process.executable.name": "sgmodality"}
        assert one(sample, "servicegate.modality.process.running", **name) == 1
        assert one(sample, "servicegate.modality.process.restarts", **name) == 0
        assert one(sample, "process.memory.usage", **name) > 0
        running.kill()
        running.wait()
        clock.now += 120
        sample = collector.sample()
        assert one(sample, "servicegate.modality.process.running", **name) == 0
        assert one(sample, "servicegate.modality.process.restarts", **name) == 1
        assert not values(sample, "process.memory.usage", **name)
        clock.now += 60
        assert one(collector.sample(), "servicegate.modality.process.restarts", **name) == 1  # still gone: once
        running = subprocess.Popen([str(program), "600"])
        clock.now += 60
        sample = collector.sample()
        assert one(sample, "servicegate.modality.process.running", **name) == 1
        assert one(sample, "servicegate.modality.process.restarts", **name) == 1  # coming back is no failure
        assert one(sample, "servicegate.modality.process.failures", **name) == 1
        assert one(sample, "servicegate.modality.process.time_since_failure", **name) == 120
        assert {p["name"] for p in sample["points"]} <= METRICS
    finally:
        running.kill()
        running.wait()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(config), "telemetry", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_cli_collect_once_prints_a_sample_and_counts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n[telemetry]\nmounts = ["/"]\n')
    result = cli(config, "collect", "--once", "--json")
    assert result.returncode == 0, result.stderr
    sample = json.loads(result.stdout)
    assert 0 <= one(sample, "system.cpu.utilization") <= 1
    assert one(sample, "system.filesystem.utilization", mountpoint="/") > 0
    assert not values(sample, "servicegate.agent.restarts")  # needs the agent's history: left out
    assert not (tmp_path / "state").exists()  # nothing written
    text = cli(config, "collect", "--once")
    assert text.returncode == 0
    assert "system.filesystem.utilization (mountpoint=/):" in text.stdout


def test_cli_status_reads_the_outbox(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n[telemetry]\noutbox_cap_mb = 64\n')
    none_yet = cli(config, "status")
    assert none_yet.returncode == 0
    assert "No outbox yet" in none_yet.stdout
    with Outbox(tmp_path / "state" / "outbox.sqlite") as outbox:
        outbox.put_many("log", [{"body": "x"}] * 3)
        outbox.note_error("connection refused")
    result = cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["records"], status["cap_bytes"], status["last_error"]) == (3, 64 * 1024 * 1024,
                                                                               "connection refused")
    text = cli(config, "status")
    assert "Waiting to be sent: 3 records" in text.stdout
    assert "Last error: connection refused" in text.stdout


def test_a_modality_process_started_again_after_a_reboot_is_no_failure(tmp_path: Path, outbox: Outbox) -> None:
    program = tmp_path / "sgmodality"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    name = {"process.executable.name": "sgmodality"}
    running = subprocess.Popen([str(program), "600"])
    try:
        Collector(outbox, processes=["sgmodality"], boot_id=lambda: "boot-1").sample()
        running.kill()
        running.wait()
        running = subprocess.Popen([str(program), "600"])  # "after the reboot": another process, another boot id
        sample = Collector(outbox, processes=["sgmodality"], boot_id=lambda: "boot-2").sample()
        assert one(sample, "servicegate.modality.process.restarts", **name) == 0
        assert one(sample, "servicegate.system.restarts") == 1
    finally:
        running.kill()
        running.wait()
