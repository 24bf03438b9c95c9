"""Outbox records as OTLP/HTTP JSON documents (OpenTelemetry protocol, `opentelemetry-proto` 1.x messages).

So that a fleet can point the device at an OpenTelemetry Collector as well as at the vendor's portal:

- records of kind "metric" become an ExportMetricsServiceRequest (`POST /v1/metrics`). A metric record's
  body is `{"time_unix_nano": int, "points": [{"name", "unit", "kind": "gauge"|"counter", "value",
  "attributes": {...}}]}`; a counter is a cumulative monotonic sum since `start_unix_nano` (default: the
  point's own time).
- every other kind (logs, alerts, the outbox's shed and quarantine reports, later session events) becomes a
  log record of an ExportLogsServiceRequest (`POST /v1/logs`): its body text, severity, and attributes;
  `event.name` says what it is (`servicegate.alert`, `servicegate.shed`, ...), except for plain log lines.

Every data point and log record carries `servicegate.sequence`, the outbox sequence of the record it came from,
and `servicegate.kind`: the receiver de-duplicates by (device, sequence) and tells a gap from a loss. The
JSON follows the OTLP/JSON mapping: lowerCamelCase field names, 64-bit integers as decimal strings, enums as
numbers, attribute values as AnyValue objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from telemetry.outbox import Record

SCOPE = {"name": "servicegate.telemetry", "version": "1"}
METRICS_PATH = "/v1/metrics"
LOGS_PATH = "/v1/logs"
CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE

# OTLP SeverityNumber of the first level of each band (opentelemetry-proto logs.proto).
SEVERITY = {"DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "CRITICAL": 21, "FATAL": 21}


def metrics_request(records: Iterable[Record], resource: Mapping[str, Any]) -> dict[str, Any]:
    """One ExportMetricsServiceRequest for metric records."""
    metrics = []
    for record in records:
        time = str(int(record.body.get("time_unix_nano", record.created * 1e9)))
        for point in record.body.get("points", []):
            attributes = {**point.get("attributes", {}), "servicegate.sequence": record.sequence,
                          "servicegate.kind": record.kind}
            data_point: dict[str, Any] = {"timeUnixNano": time, "attributes": _attributes(attributes)}
            value = point["value"]
            if isinstance(value, int) and not isinstance(value, bool):
                data_point["asInt"] = str(value)
            else:
                data_point["asDouble"] = float(value)
            metric: dict[str, Any] = {"name": point["name"], "unit": point.get("unit", "")}
            if point.get("kind") == "counter":
                data_point["startTimeUnixNano"] = str(int(point.get("start_unix_nano") or time))
                metric["sum"] = {"dataPoints": [data_point], "aggregationTemporality": CUMULATIVE,
                                 "isMonotonic": True}
            else:
                metric["gauge"] = {"dataPoints": [data_point]}
            metrics.append(metric)
    return {"resourceMetrics": [{"resource": {"attributes": _attributes(resource)},
                                 "scopeMetrics": [{"scope": SCOPE, "metrics": metrics}]}]}


def logs_request(records: Iterable[Record], resource: Mapping[str, Any]) -> dict[str, Any]:
    """One ExportLogsServiceRequest: log lines as they are, every other kind as an event."""
    log_records = []
    for record in records:
        body = record.body
        attributes = dict(body.get("attributes", {})) if record.kind in ("log", "debug_log") else \
            {"event.name": f"servicegate.{record.kind}", **_flat(body), **body.get("attributes", {})}
        attributes.update({"servicegate.sequence": record.sequence, "servicegate.kind": record.kind})
        severity = str(body.get("severity", "DEBUG" if record.kind == "debug_log" else "INFO")).upper()
        text = body.get("body") if record.kind in ("log", "debug_log") else _summary(record)
        log_records.append({
            "timeUnixNano": str(int(body.get("time_unix_nano", record.created * 1e9))),
            "observedTimeUnixNano": str(int(record.created * 1e9)),
            "severityNumber": SEVERITY.get(severity, 9),
            "severityText": severity,
            "body": {"stringValue": str(text or "")},
            "attributes": _attributes(attributes),
        })
    return {"resourceLogs": [{"resource": {"attributes": _attributes(resource)},
                              "scopeLogs": [{"scope": SCOPE, "logRecords": log_records}]}]}


def _summary(record: Record) -> str:
    """The text of an event: what a person reading the receiver's log should see first."""
    body = record.body
    if record.kind == "alert":
        where = ", ".join(f"{k}={v}" for k, v in body.get("attributes", {}).items())
        return f"{body.get('state', 'firing')}: {body.get('rule', '')} ({body.get('metric', '')}" \
               f"{f' [{where}]' if where else ''} = {body.get('value', '')}, limit {body.get('comparison', '')} " \
               f"{body.get('limit', '')})"
    if record.kind == "task_file":  # its content is in the attributes: not twice in one message
        return f"task_file: {body.get('task_id', '')}/{body.get('name', '')} ({body.get('size', 0)} bytes)"
    if record.kind in ("shed", "quarantined"):
        return f"{record.kind}: {body.get('count', 0)} records; {body.get('reason', '')}"
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _flat(body: Mapping[str, Any], prefix: str = "servicegate.") -> dict[str, Any]:
    """An event's fields as attributes; structured values (lists of ranges, nested maps) as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in body.items():
        if key in ("time_unix_nano", "severity", "attributes"):
            continue
        flat[prefix + key] = value if isinstance(value, str | int | float | bool) else \
            json.dumps(value, sort_keys=True, separators=(",", ":"))
    return flat


def _attributes(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _any_value(value)} for key, value in values.items()]


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}
