"""The agent daemon runs telemetry: a real `servicegate run` delivers a sample, a threshold alert and a scrubbed
journal entry to a real OTLP receiver (HTTPS on 127.0.0.1, client certificate required), and refuses a wrong
[telemetry] at start."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from telemetry.scrubber import REMOVED
from tests.agent_process import AgentProcess
from tests.journal import Journal, needs_journal_remote
from tests.otlp_receiver import Receiver
from tests.pki import Pki, make_pki


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    # A short folder name: the control socket's path must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="sgt-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), device_id="CT-0042")


def telemetry_config(pki: Pki, url: str, rules: Path) -> str:
    return (f'[telemetry]\nendpoint = "{url}"\nca_file = "{pki.ca_cert}"\nclient_cert = "{pki.client_cert}"\n'
            f'client_key = "{pki.client_key}"\nthresholds = "{rules}"\ncollect_s = 5\npush_s = 5\n')


def wait_for(condition: Callable[[], object], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds  # a real daemon: its first runs come a second after the start
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


def journal_cursor(agent_dir: Path) -> str | None:
    """The journal cursor the agent keeps in its outbox, once its first read of the journal is done."""
    path = agent_dir / "state" / "outbox.sqlite"
    if not path.exists():
        return None
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT value FROM facts WHERE key = 'journal:cursor'").fetchone()
    return row[0] if row else None


@needs_journal_remote
def test_the_agent_delivers_a_sample_an_alert_and_a_scrubbed_journal_entry(agent_dir: Path, pki: Pki) -> None:
    rules = agent_dir / "thresholds.toml"
    rules.write_text('[[rule]]\nname = "running"\nmetric = "system.uptime"\ncomparison = ">"\nlimit = 0\n'
                     'severity = "info"\n')  # holds at once: the first sample raises an alert
    journal = Journal(agent_dir / "journal")
    journal.directory.mkdir()
    journal.lines("written before the agent first ran: not sent")
    config = telemetry_config(pki, "{url}", rules) + f'journal = true\njournal_directory = "{journal.directory}"\n' \
        'logs_s = 5\n'
    with Receiver(pki) as receiver:
        agent = AgentProcess(agent_dir, config.replace("{url}", receiver.url)).start()
        try:
            wait_for(lambda: journal_cursor(agent_dir) is not None)
            journal.lines("Exam started: PatientName=DOE^JOHN PatientID=12345678 protocol Head")
            wait_for(lambda: {"alert", "metric"} <= receiver.kinds()
                     and any("protocol Head" in text for text in receiver.log_texts()))
        finally:
            assert agent.stop() == 0
        assert {"alert", "metric"} <= receiver.kinds(), agent.log.read_text()
        journal_texts = [text for text in receiver.log_texts() if "protocol Head" in text or "not sent" in text]
        assert len(journal_texts) == 1, receiver.log_texts()
        assert "DOE" not in journal_texts[0]
        assert REMOVED in journal_texts[0]
        assert receiver.invalid == []
        resource = receiver.accepted[0].document
        attributes = next(iter(resource.values()))[0]["resource"]["attributes"]
        assert {"key": "servicegate.device.id", "value": {"stringValue": "CT-0042"}} in attributes
    status = agent.cli_json("telemetry", "status")
    assert status["last_push"] is not None


@pytest.mark.parametrize(("extra", "expected"), [
    ('[telemetry]\nendpoint = "http://127.0.0.1:9"\n', "only https:// is allowed"),
    ('[telemetry]\nendpoint = "https://127.0.0.1:9"\n', "so ca_file is needed too"),
    ('[telemetry]\nscrub_patterns = ["(unclosed"]\n', "scrub_patterns: not a regular expression"),
])
def test_a_wrong_telemetry_section_stops_the_agent_with_one_message(agent_dir: Path, extra: str,
                                                                    expected: str) -> None:
    agent = AgentProcess(agent_dir, extra)
    result = agent.cli("run")
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_threshold_rule_naming_an_unknown_metric_stops_the_agent(agent_dir: Path) -> None:
    rules = agent_dir / "thresholds.toml"
    rules.write_text('[[rule]]\nname = "cpu"\nmetric = "cpu.load"\ncomparison = ">"\nlimit = 0.9\n')
    agent = AgentProcess(agent_dir, f'[telemetry]\nthresholds = "{rules}"\n')
    result = agent.cli("run")
    assert result.returncode == 2
    assert "unknown metric 'cpu.load'" in result.stderr
    assert "Traceback" not in result.stderr
