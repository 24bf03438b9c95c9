"""agent.toml: one frozen object; every mistake gets one message naming file, key, value and fix."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import Config, ConfigError, defaults, load, markdown

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_empty_file_means_defaults_and_the_object_is_frozen(tmp_path: Path) -> None:
    config = load(write(tmp_path, ""))
    assert config == defaults()
    assert config.sessions.idle_timeout_min == 15
    assert config.audit.retention_days == 365
    assert config.paths.audit_dir == Path("/var/lib/servicegate/audit")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sessions.idle_timeout_min = 1  # type: ignore[misc]


def test_values_and_relative_paths(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[paths]\nstate_dir = "state"\ncontrol_socket = "/tmp/x.sock"\n'
                                  '[sessions]\nidle_timeout_min = 30\n[daemon]\nlog_level = "debug"\n'))
    assert config.paths.state_dir == tmp_path / "state"
    assert config.paths.audit_dir == tmp_path / "state" / "audit"
    assert config.paths.control_socket == Path("/tmp/x.sock")
    assert config.sessions.idle_timeout_min == 30
    assert config.daemon.log_level == "debug"
    assert config.source == tmp_path / "agent.toml"


def test_the_anonymizer_section(tmp_path: Path) -> None:
    assert defaults().anonymizer.options == ()
    assert defaults().anonymizer.jobs == 1
    config = load(write(tmp_path, '[anonymizer]\noptions = ["retain-uids", "clean-descriptors"]\n'
                                  'safe_private = "site/safe.csv"\npixel_rules = "/etc/servicegate/pixels.toml"\n'
                                  "jobs = 2\n"))
    assert config.anonymizer.options == ("retain-uids", "clean-descriptors")
    assert config.anonymizer.safe_private == tmp_path / "site" / "safe.csv"
    assert config.anonymizer.pixel_rules == Path("/etc/servicegate/pixels.toml")
    assert config.anonymizer.jobs == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("[sesions]\n", ["unknown section [sesions]", "did you mean 'sessions'", "Allowed sections"]),
    ("[sessions]\nidle_timeout = 5\n", ["unknown key [sessions] idle_timeout", "did you mean 'idle_timeout_min'"]),
    ('[sessions]\nidle_timeout_min = "15"\n', ["[sessions] idle_timeout_min = '15'", "not a whole number",
                                               "from 1 to 240"]),
    ("[sessions]\nidle_timeout_min = 0\n", ["idle_timeout_min = 0 is out of range", "from 1 to 240"]),
    ("[audit]\nretention_days = 30\n", ["retention_days = 30 is out of range", "from 365 to 3650"]),
    ("[sessions]\nidle_timeout_min = true\n", ["not a whole number"]),
    ('[daemon]\nlog_level = "loud"\n', ["log_level = 'loud' is not allowed", "'debug', 'info'"]),
    ("[paths]\nstate_dir = 5\n", ["state_dir = 5 is not a path"]),
    ("paths = 3\n", ["[paths] must be a table"]),
    ('[paths]\nstate_dir = ""\n', ["[paths] state_dir is empty", "/var/lib/servicegate"]),
    ('[paths]\ncontrol_socket = ""\n', ["[paths] control_socket is empty"]),
    (f'[paths]\ncontrol_socket = "/{"s" * 120}.sock"\n', ["bytes long; a socket path may have at most 107"]),
    ("[paths\n", ["not valid TOML"]),
    ('[anonymizer]\noptions = "retain-uids"\n', ["[anonymizer] options = 'retain-uids' is not a list of names",
                                                 '["first", "second"]']),
    ('[anonymizer]\noptions = ["retain-uids", 3]\n', ["is not a list of names"]),
    ('[anonymizer]\noptions = ["retain-uids", "retain-uids"]\n', ["names something twice"]),
    ("[anonymizer]\njobs = 0\n", ["[anonymizer] jobs = 0 is out of range", "from 1 to 64"]),
    ('[telemetry]\nmounts = "/"\n', ["[telemetry] mounts = '/' is not a list of names"]),
    ("[telemetry]\noutbox_cap_mb = 1\n", ["outbox_cap_mb = 1 is out of range", "from 16 to 16384"]),
    ('[telemetry]\njournal = "yes"\n', ["[telemetry] journal = 'yes' is not true or false", "unquoted"]),
    ('[telemetry]\njournal_priority = "verbose"\n', ["journal_priority = 'verbose' is not allowed", "'debug'"]),
    ('[portal]\nproxy_url = "proxy.example:3128"\n', ["[portal] proxy_url = 'proxy.example:3128' is not a proxy URL",
                                                      "http://proxy.example:3128"]),
    ("[portal]\ninbox_wait_s = 0\n", ["[portal] inbox_wait_s = 0 is out of range", "from 1 to 120"]),
    ('[console]\nhotkey = "End"\n', ["[console] hotkey 'End': write modifiers and a key joined by +",
                                     "Ctrl+Alt+End"]),
    ('[console]\nhotkey = "Ctrl+Hyper+End"\n', ["'Hyper' is not a modifier; use Ctrl, Alt, Shift or Super"]),
    ('[console]\nhotkey = "Ctrl+Alt+"\n', ["write modifiers and a key joined by +"]),
    ('[console]\nhotkey = "Ctrl+Alt+End key"\n', ["'End key' is not a key name; use one like End, Pause or F12"]),
])
def test_bad_configuration_names_file_key_value_and_what_is_allowed(tmp_path: Path, text: str,
                                                                    expected: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load(tmp_path / "nope.toml")


def test_the_cli_prints_one_line_and_exits_2_never_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "[sessions]\nidle_timeout_min = -4\n")
    result = subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(path), "run"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "idle_timeout_min = -4 is out of range" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_docs_configuration_md_is_generated_from_the_schema() -> None:
    documented = (REPO / "docs" / "configuration.md").read_text()
    assert documented == markdown(), "docs/configuration.md is stale: run `make docs`"
    for section in dataclasses.fields(Config):
        if section.name != "source":
            assert f"## [{section.name}]" in documented
