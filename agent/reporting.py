"""The agent's telemetry: the `telemetry` package's parts built from the configuration, started and stopped by the
daemon; and what the portal hears of sessions, of tasks and, with a service request, of the system. Every mistake
in `[telemetry]` that only shows when the parts are built (a threshold rule, a scrub pattern, a receiver without its
certificates) stops the agent at start with one message, like any other configuration error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

from agent import __version__
from agent.builtin_tasks import report_lines
from agent.config import Config
from agent.connection import pinned_session
from agent.errors import ConfigError
from agent.updates import vendor_thresholds
from agent.uplink import Uplink
from telemetry.collectors import Collector
from telemetry.journal import JournalTail
from telemetry.logtail import LogTail
from telemetry.outbox import Outbox, OutboxError
from telemetry.scrubber import Scrubber, validate
from telemetry.service import Intervals, TelemetryService
from telemetry.shipper import Shipper
from telemetry.thresholds import DEFAULT_RULES, Rule, RuleError, Thresholds, load_rules

EMPTY = Path("")
log = logging.getLogger("servicegate.telemetry")


def build(config: Config, counters: Callable[[], Mapping[str, int]], link: Uplink | None = None) -> TelemetryService:
    """The telemetry service for `config`; `counters` gives the modality's scan and error counts. An enrolled
    device sends to its portal through the link's pinned session; otherwise `[telemetry] endpoint` (e.g. an
    OpenTelemetry Collector), if set."""
    t = config.telemetry
    where = f"{config.source or 'configuration'}: [telemetry]"
    problems = validate(t.scrub_patterns)
    if problems:
        raise ConfigError(f"{where} scrub_patterns: not a regular expression: {problems[0]}. Fix or remove it.")
    rules = threshold_rules(config)
    session: requests.Session | None
    if link is not None:
        session, device, endpoint = link.session, link.enrollment.device_id, link.url
    else:
        (session, device), endpoint = _session(config, where), t.endpoint
    try:
        outbox = Outbox(config.paths.outbox, cap_bytes=t.outbox_cap_mb * 1024 * 1024)
    except OutboxError as exc:
        raise ConfigError(str(exc)) from None
    resource = {"service.name": "servicegate", "service.version": __version__, "servicegate.device.id": device}
    shipper = Shipper(outbox, session, endpoint, resource) if session is not None else None
    scrubber = Scrubber(t.scrub_patterns)
    journal = JournalTail(outbox, units=t.journal_units, priority=t.journal_priority,
                          directory=t.journal_directory if t.journal_directory != EMPTY else None, scrubber=scrubber,
                          max_line_bytes=t.max_line_kb * 1024) if t.journal else None
    return TelemetryService(
        outbox,
        Collector(outbox, mounts=t.mounts, processes=t.processes, counters=counters),
        LogTail(outbox, [Path(f) for f in t.log_files], scrubber=scrubber, max_line_bytes=t.max_line_kb * 1024),
        Thresholds(rules, outbox),
        shipper,
        Intervals(collect_s=t.collect_s, logs_s=t.logs_s, push_s=t.push_s),
        journal=journal,
    )


def threshold_rules(config: Config) -> tuple[Rule, ...]:
    """The alert rules: the site's own file (`[telemetry] thresholds`), else the vendor's from its last configuration
    update (agent.updates), else the built-in defaults. A vendor's file that no longer reads (it was checked when it
    was installed) is logged and the defaults apply: telemetry never stops for it."""
    if config.telemetry.thresholds != EMPTY:
        try:
            return load_rules(config.telemetry.thresholds)
        except RuleError as exc:
            raise ConfigError(f"{config.source or 'configuration'}: [telemetry] thresholds: {exc}") from None
    vendor = vendor_thresholds(config.paths.state_dir)
    if vendor is None:
        return DEFAULT_RULES
    try:
        return load_rules(vendor)
    except RuleError as exc:
        log.error("the vendor's threshold rules cannot be used (%s); the built-in rules apply", exc)
        return DEFAULT_RULES


def checkpoint_head(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the portal keeps of an audit checkpoint (its `servicegate.*` attributes): enough for
    `servicegate audit verify --against-portal` to find records cut off the end of the local log."""
    return {"seq": record["seq"], "ts": record["ts"], **record["details"]}


def session_event(event: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """What the portal hears of a session (kind `session_event`): its state, level, engineer, end reason and the
    engineer's summary, failed one-time passwords; or why a request of the portal about it was refused."""
    if event == "session_refused":
        return {"session_id": data["id"], "refused": data["why"], "message_type": data["type"]}
    return {"session_id": data["id"], "state": data["state"],
            "level": data["effective_level"] or data["requested_level"], "engineer_id": data["engineer"]["id"],
            "end_reason": data["end_reason"] or "", "end_text": data["end_text"],
            "auth_failures": data["auth_failures"]}


def task_event(data: Mapping[str, Any], scrub: Callable[[str], str]) -> dict[str, Any]:
    """What the portal hears of a task run (kind `task_event`): the run as the agent shows it, whose output was
    scrubbed and whose files were handled by type before it got here (agent.taskrun). Parameter values and file
    names are scrubbed here (a path or a file name can hold a patient's name). The task's kind travels as
    `task_kind`: `kind` is the outbox record's own (servicegate.kind = task_event)."""
    files = [{**f, "name": scrub(str(f["name"]))} for f in data["files"]]
    params = {name: scrub(str(value)) for name, value in data["params"].items()}
    return {"task_kind": data["kind"], "params": params, "files": files, **{key: data[key] for key in (
        "id", "session_id", "engineer_id", "state", "created_at", "ended_at", "stop_reason", "returncode",
        "stdout", "stderr", "dropped", "restore")}}


def system_report(config: Config, counters: Mapping[str, int], scrub: Callable[[str], str]) -> dict[str, Any]:
    """The technical report that goes with a service request: the `system-report` task's text (OS, CPU, memory,
    disks, network interfaces by name, the processes using most memory by name), its lines scrubbed all the same,
    and one telemetry sample as `servicegate telemetry collect --once` takes it. No patient data: figures and the
    names of mounts, devices and processes; never a file of a DICOM store, a command line, an address or a log line.
    """
    sample = Collector(None, mounts=config.telemetry.mounts, processes=config.telemetry.processes,
                       counters=lambda: counters).sample()
    # A one-off sample measures CPU utilization over no time at all; the load averages in the text say it better.
    points = [point for point in sample["points"] if point["name"] != "system.cpu.utilization"]
    return {"system": [scrub(line) for line in report_lines()], "time_unix_nano": sample["time_unix_nano"],
            "metrics": points}


def _session(config: Config, where: str) -> tuple[requests.Session | None, str]:
    """The mutual-TLS session to the receiver: its CA the only trust anchor, the device certificate, no proxy
    or CA from the environment. (None, "unknown") when no receiver is configured."""
    t = config.telemetry
    if not t.endpoint:
        return None, "unknown"
    if not t.endpoint.startswith("https://"):
        raise ConfigError(f"{where} endpoint = {t.endpoint!r}: only https:// is allowed (telemetry leaves the "
                          "device only over mutual TLS).")
    for key, path in (("ca_file", t.ca_file), ("client_cert", t.client_cert), ("client_key", t.client_key)):
        if path == EMPTY:
            raise ConfigError(f"{where} endpoint is set, so {key} is needed too: the receiver's CA, the device's "
                              "certificate and its key.")
        if not path.is_file():
            raise ConfigError(f"{where} {key} = {str(path)!r}: no such file.")
    try:
        certificate = x509.load_pem_x509_certificate(t.client_cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where} client_cert = {str(t.client_cert)!r}: not a PEM certificate ({exc}).") from None
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    device = str(names[0].value) if names else "unknown"
    return pinned_session(t.ca_file, client_cert=(t.client_cert, t.client_key)), device
