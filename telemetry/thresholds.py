"""Threshold rules: a message at once when a value exceeds or falls below a defined limit (the seed's
"proactive service"), and another when it is back.

A rule names a metric of the collectors (`telemetry.collectors.METRICS`), a comparison, a limit, how long
the comparison must hold before it counts (`for_s`), a severity, optionally the attributes a point must have
(`where = {mountpoint = "/"}`) and a hysteresis band. Each point the rule matches (each mount, each process)
is watched on its own:

- the comparison holds for `for_s` seconds: one alert, `state = "firing"`; nothing more while it holds;
- the value is back beyond the limit by the hysteresis band: one alert, `state = "cleared"`; a value that
  hovers around the limit inside the band changes nothing (no storm of alerts);
- a comparison that stops holding before `for_s` has passed sends nothing.

The firing state is kept in the outbox database, so an agent restart neither repeats an alert nor forgets
to clear one. Rules come from a TOML file (`[telemetry] thresholds` in agent.toml; built-in defaults
otherwise); every mistake in it is one message naming the file, the rule and the key.
"""

from __future__ import annotations

import difflib
import json
import operator
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telemetry.collectors import METRICS
from telemetry.outbox import Outbox

STATE_KEY = "thresholds.state"
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
SEVERITIES = ("info", "warning", "critical")
_KEYS = ("name", "metric", "comparison", "limit", "for_s", "severity", "where", "hysteresis")
_FORMAT_HINT = ('write each rule as a [[rule]] table with name, metric, comparison (">", ">=", "<", "<="), limit, '
                'and optionally for_s, severity ("info", "warning", "critical"), where = {attribute = "value"} '
                "and hysteresis")


class RuleError(ValueError):
    """A threshold rule is wrong; the message says where and what to write instead."""


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    comparison: str
    limit: float
    for_s: float = 0.0
    severity: str = "warning"
    where: Mapping[str, str] = field(default_factory=dict)
    hysteresis: float = 0.0  # how far back beyond the limit the value must be before the alert clears

    def holds(self, value: float) -> bool:
        return COMPARISONS[self.comparison](value, self.limit)

    def recovered(self, value: float) -> bool:
        """Back beyond the limit by the hysteresis band (for ">", below limit - hysteresis)."""
        if self.comparison in (">", ">="):
            return value < self.limit - self.hysteresis if self.hysteresis else not self.holds(value)
        return value > self.limit + self.hysteresis if self.hysteresis else not self.holds(value)


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("disk-almost-full", "system.filesystem.utilization", ">", 0.90, for_s=300, severity="warning",
         hysteresis=0.02),
    Rule("disk-full", "system.filesystem.utilization", ">", 0.97, for_s=60, severity="critical", hysteresis=0.01),
    Rule("memory-exhausted", "system.memory.utilization", ">", 0.95, for_s=300, severity="warning",
         hysteresis=0.03),
    Rule("modality-process-down", "servicegate.modality.process.running", "<", 1, for_s=120, severity="critical"),
)


class Thresholds:
    """Watches samples against rules; `check` returns the alert bodies to queue (kind "alert")."""

    def __init__(self, rules: Sequence[Rule], outbox: Outbox | None = None) -> None:
        self.rules, self.outbox = tuple(rules), outbox
        text = outbox.fact(STATE_KEY) if outbox is not None else None
        try:
            loaded = json.loads(text) if text else {}
        except ValueError:
            loaded = {}
        self._state: dict[str, dict[str, Any]] = loaded if isinstance(loaded, dict) else {}

    def check(self, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The alerts `sample` raises. The new state is kept only by `commit` (with the alerts, in one
        transaction: an alert is never marked sent without being queued), or here when `outbox` is None."""
        now = sample["time_unix_nano"] / 1e9  # the sample's own time: hold times follow the samples
        alerts = []
        for rule in self.rules:
            for point in sample.get("points", []):
                attributes = point.get("attributes", {})
                if point["name"] != rule.metric or any(attributes.get(k) != v for k, v in rule.where.items()):
                    continue
                key = json.dumps([rule.name, sorted(attributes.items())])
                alert = self._watch(rule, key, float(point["value"]), attributes, now)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def commit(self, alerts: list[dict[str, Any]]) -> None:
        """Queue `alerts` (kind "alert") and keep the state that raised them, in one transaction."""
        if self.outbox is not None:
            self.outbox.put_many("alert", alerts, facts={STATE_KEY: json.dumps(self._state, sort_keys=True)})

    def _watch(self, rule: Rule, key: str, value: float, attributes: Mapping[str, str],
               now: float) -> dict[str, Any] | None:
        state = self._state.setdefault(key, {"firing": False, "since": None})
        if not state["firing"]:
            if not rule.holds(value):
                state["since"] = None
                return None
            if state["since"] is None or now < state["since"]:  # a first crossing, or the clock stepped back
                state["since"] = now
            if now - state["since"] < rule.for_s:
                return None
            state["firing"] = True
            return _alert("firing", rule, value, attributes, state["since"], now)
        if not rule.recovered(value):
            return None
        state.update(firing=False, since=None)
        return _alert("cleared", rule, value, attributes, None, now)


def _alert(state: str, rule: Rule, value: float, attributes: Mapping[str, str], since: float | None,
           now: float) -> dict[str, Any]:
    return {"state": state, "rule": rule.name, "metric": rule.metric, "value": value,
            "comparison": rule.comparison, "limit": rule.limit, "severity": rule.severity,
            "attributes": dict(attributes), "since": since, "time_unix_nano": int(now * 1e9)}


# ---- the rules file ---------------------------------------------------------------------------------


def load_rules(path: Path) -> tuple[Rule, ...]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"cannot read the threshold rules file {path}: {exc.strerror or type(exc).__name__}.") \
            from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError(f"the threshold rules file {path} is not valid TOML: {exc}.") from None
    return parse_rules(document, str(path))


def parse_rules(document: Mapping[str, Any], source: str) -> tuple[Rule, ...]:
    unknown = sorted(set(document) - {"rule"})
    tables = document.get("rule")
    if unknown or not isinstance(tables, list) or not tables:
        raise RuleError(f"the threshold rules file {source} holds no [[rule]] tables"
                        f"{f' (unknown key {unknown[0]!r})' if unknown else ''}; {_FORMAT_HINT}.")
    rules: list[Rule] = []
    for number, table in enumerate(tables, start=1):
        rule = _parse_rule(table, f"the threshold rules file {source}, rule {number}")
        if any(r.name == rule.name for r in rules):
            raise RuleError(f"the threshold rules file {source}, rule {number}: the name {rule.name!r} is taken by "
                            "an earlier rule; give each rule its own name.")
        rules.append(rule)
    return tuple(rules)


def _parse_rule(table: object, where: str) -> Rule:
    if not isinstance(table, dict):
        raise RuleError(f"{where}: not a table; {_FORMAT_HINT}.")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise RuleError(f"{where}: unknown key {unknown[0]!r}{_close(unknown[0], _KEYS)}; the keys are "
                        f"{', '.join(_KEYS)}.")
    missing = [k for k in ("name", "metric", "comparison", "limit") if k not in table]
    if missing:
        raise RuleError(f"{where}: {missing[0]!r} is missing; {_FORMAT_HINT}.")
    name, metric, comparison = table["name"], table["metric"], table["comparison"]
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"{where}: 'name' must be a non-empty text.")
    where = f"{where} ({name!r})"
    if metric not in METRICS:
        raise RuleError(f"{where}: unknown metric {metric!r}{_close(str(metric), METRICS)}; the metrics are listed "
                        "in docs/telemetry.md.")
    if comparison not in COMPARISONS:
        raise RuleError(f"{where}: comparison {comparison!r} is not one of {', '.join(COMPARISONS)}.")
    numbers = {}
    for key, default in (("limit", None), ("for_s", 0.0), ("hysteresis", 0.0)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or (key != "limit" and value < 0):
            raise RuleError(f"{where}: {key} = {value!r} must be a number{'' if key == 'limit' else ' of 0 or more'}.")
        numbers[key] = float(value)
    severity = table.get("severity", "warning")
    if severity not in SEVERITIES:
        raise RuleError(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}.")
    match = table.get("where", {})
    if not isinstance(match, dict) or not all(isinstance(v, str) for v in match.values()):
        raise RuleError(f'{where}: where must be a table of texts, like where = {{mountpoint = "/"}}.')
    return Rule(name.strip(), metric, comparison, numbers["limit"], numbers["for_s"], severity, dict(match),
                numbers["hysteresis"])


def _close(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
