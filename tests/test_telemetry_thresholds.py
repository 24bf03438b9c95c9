"""telemetry.thresholds: one alert per crossing, after `for_s`; a clear on recovery beyond the hysteresis band;
state kept across agent restarts; rule files with every mistake named. Time comes from the samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from telemetry.collectors import METRICS
from telemetry.outbox import Outbox
from telemetry.thresholds import DEFAULT_RULES, Rule, RuleError, Thresholds, load_rules

T0 = 1_800_000_000


def sample(minute: int, value: float, mount: str = "/") -> dict[str, Any]:
    return {"time_unix_nano": (T0 + minute * 60) * 10**9, "points": [
        {"name": "system.filesystem.utilization", "value": value, "unit": "1", "kind": "gauge",
         "attributes": {"mountpoint": mount}},
        {"name": "system.cpu.utilization", "value": 0.5, "unit": "1", "kind": "gauge", "attributes": {}}]}


DISK = Rule("disk", "system.filesystem.utilization", ">", 0.90, for_s=300, severity="critical", hysteresis=0.02)


def run(thresholds: Thresholds, values: list[float], start: int = 0) -> list[tuple[int, str]]:
    """(minute, state) of every alert while the values arrive once a minute, each committed as the agent does."""
    found = []
    for minute, value in enumerate(values):
        alerts = thresholds.check(sample(start + minute, value))
        thresholds.commit(alerts)
        found += [(start + minute, alert["state"]) for alert in alerts]
    return found


def test_one_alert_after_the_hold_time_and_one_clear_beyond_the_band() -> None:
    values = [0.5, 0.95, 0.95, 0.95, 0.95, 0.95, 0.96, 0.97, 0.89, 0.91, 0.89, 0.87, 0.95]
    #          0    1     2     3     4     5     6     7     8     9     10    11    12
    assert run(Thresholds([DISK]), values) == [(6, "firing"), (11, "cleared")]
    # fired 5 minutes after the first crossing (minute 1); 0.89 and 0.91 hover inside the band: no storm;
    # 0.87 < 0.90 - 0.02 clears; a new crossing at minute 12 starts a new hold time.


def test_a_crossing_shorter_than_the_hold_time_sends_nothing() -> None:
    assert run(Thresholds([DISK]), [0.95, 0.95, 0.5, 0.95, 0.95, 0.95, 0.5]) == []


def test_the_alert_body_and_each_point_watched_on_its_own() -> None:
    thresholds = Thresholds([Rule("full", "system.filesystem.utilization", ">=", 0.9)])
    alerts = thresholds.check(sample(0, 0.93, "/var"))
    assert alerts == [{"state": "firing", "rule": "full", "metric": "system.filesystem.utilization", "value": 0.93,
                       "comparison": ">=", "limit": 0.9, "severity": "warning",
                       "attributes": {"mountpoint": "/var"}, "since": T0, "time_unix_nano": T0 * 10**9}]
    assert [a["attributes"] for a in thresholds.check(sample(1, 0.95, "/data"))] == [{"mountpoint": "/data"}]
    assert thresholds.check(sample(2, 0.95, "/var")) == []  # still firing: nothing new


def test_below_limits_and_where_filters() -> None:
    rule = Rule("cpu-idle", "system.cpu.utilization", "<", 0.6, where={})
    assert [a["state"] for a in Thresholds([rule]).check(sample(0, 0.5))] == ["firing"]
    only_var = Rule("var", "system.filesystem.utilization", ">", 0.9, where={"mountpoint": "/var"})
    assert Thresholds([only_var]).check(sample(0, 0.99, "/")) == []


def test_firing_state_survives_an_agent_restart_and_is_kept_with_its_alert(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as outbox:
        assert run(Thresholds([DISK], outbox), [0.95] * 7) == [(5, "firing")]
        assert [r.kind for r in outbox.batch()] == ["alert"]  # queued in the same transaction as the state
    with Outbox(path) as outbox:
        again = Thresholds([DISK], outbox)
        assert run(again, [0.95, 0.95, 0.80], start=7) == [(9, "cleared")]  # not fired twice, still cleared


def test_a_clock_step_back_restarts_the_hold_time_instead_of_silencing_it() -> None:
    thresholds = Thresholds([DISK])
    assert run(thresholds, [0.95, 0.95]) == []
    assert run(thresholds, [0.95] * 7, start=-1440) == [(-1435, "firing")]  # a day back: five minutes again


def test_the_default_rules_name_real_metrics() -> None:
    assert {rule.metric for rule in DEFAULT_RULES} <= METRICS


def test_a_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text('[[rule]]\nname = "data-full"\nmetric = "system.filesystem.utilization"\ncomparison = ">"\n'
                    'limit = 0.8\nfor_s = 120\nseverity = "critical"\nwhere = {mountpoint = "/data"}\n'
                    "hysteresis = 0.05\n")
    assert load_rules(path) == (Rule("data-full", "system.filesystem.utilization", ">", 0.8, 120.0, "critical",
                                     {"mountpoint": "/data"}, 0.05),)


@pytest.mark.parametrize(("text", "expected"), [
    ('[[rule]]\nname = "x"\nmetric = "system.cpu.utilisation"\ncomparison = ">"\nlimit = 1\n',
     ["rule 1 ('x'): unknown metric 'system.cpu.utilisation'", "did you mean 'system.cpu.utilization'",
      "docs/telemetry.md"]),
    ('[[rule]]\nname = "x"\nmetric = "system.uptime"\ncomparison = "=="\nlimit = 1\n',
     ["comparison '==' is not one of >, >=, <, <="]),
    ('[[rule]]\nname = "x"\nmetric = "system.uptime"\ncomparison = ">"\nlimit = "high"\n',
     ["limit = 'high' must be a number"]),
    ('[[rule]]\nname = "x"\nmetric = "system.uptime"\ncomparison = ">"\nlimit = 1\nfor_s = -5\n',
     ["for_s = -5 must be a number of 0 or more"]),
    ('[[rule]]\nname = "x"\nmetric = "system.uptime"\ncomparison = ">"\nlimit = 1\nseverity = "loud"\n',
     ["severity 'loud' is not one of info, warning, critical"]),
    ('[[rule]]\nname = "x"\nmetric = "system.uptime"\ncomparison = ">"\nlimt = 1\n',
     ["unknown key 'limt'", "did you mean 'limit'"]),
    ('[[rule]]\nname = "x"\nmetric = "system.uptime"\ncomparison = ">"\n', ["'limit' is missing"]),
    ('[[rule]]\nname = "x"\nmetric = "system.uptime"\ncomparison = ">"\nlimit = 1\n[[rule]]\nname = "x"\n'
     'metric = "system.uptime"\ncomparison = ">"\nlimit = 2\n', ["rule 2: the name 'x' is taken"]),
    ("rules = 3\n", ["holds no [[rule]] tables", "unknown key 'rules'"]),
    ("[[rule\n", ["is not valid TOML"]),
])
def test_every_mistake_in_a_rules_file_is_named(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    with pytest.raises(RuleError) as info:
        load_rules(path)
    assert str(path) in str(info.value)
    for part in expected:
        assert part in str(info.value)
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")


def test_docs_list_the_built_in_rules_as_they_are() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "telemetry.md").read_text()
    for rule in DEFAULT_RULES:
        row = (f"| `{rule.name}` | `{rule.metric}` | {rule.comparison} {rule.limit:g} | {rule.for_s:g} s | "
               f"{rule.severity} | {rule.hysteresis:g} |")
        assert row in text, row
