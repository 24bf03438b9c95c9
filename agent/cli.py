"""`servicegate`: the command line over the control API. It only parses, calls and prints.

Exit codes (one table for all three programs, see docs/cli.md): 0 ok, 1 a check failed or the
operation was refused, 2 usage or configuration error, 3 partly done, 4 agent not reachable,
5 permission denied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agent import __version__
from agent.client import Client
from agent.clock import parse_utc, utc_iso
from agent.config import DEFAULT_CONFIG_PATH, Config, defaults, load
from agent.errors import (
    AgentUnreachableError,
    ExitCode,
    NotFoundError,
    PermissionDeniedError,
    PortalError,
    ServiceGateError,
    UsageError,
)
from agent.fsutil import atomic_write
from agent.protocol import EVENT_KINDS, PRIVACY_DISCLAIMER, SESSION_LEVELS, AccessLevel, SessionKind, Urgency
from agent.timeparse import local, parse_duration, parse_time
from anonymizer.profile import Option, validate_options

if TYPE_CHECKING:
    from anonymizer.batch import BatchReport, Progress

LEVELS = [level.value for level in AccessLevel]
SESSION_LEVEL_NAMES = [level.value for level in SESSION_LEVELS]
KINDS = [kind.value for kind in SessionKind]
UPLOAD_TIMEOUT_S = 900  # de-identifying a large study takes a while; the kill switch is another connection
KILL_TIMEOUT_S = 300  # the grace period, then each stopped task's restore command: the receipt waits for all of it
REQUEST_TIMEOUT_S = 90  # the system report, then the portal's answer (connect and [portal] request_timeout_s)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servicegate", description="ServiceGate remote-service agent.")
    parser.add_argument("--version", action="version", version=f"servicegate {__version__}")
    parser.add_argument("--config", type=Path, default=None,
                        help=f"configuration file (default {DEFAULT_CONFIG_PATH})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def reading(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        return p

    sub.add_parser("run", help="run the agent (what the systemd unit starts)")
    sub.add_parser("ui", help="the consent UI in this desktop session (what the UI's autostart entry starts)")
    reading(sub.add_parser("status", help="access level, open sessions, examination block"))

    access = sub.add_parser("access", help="show or set the access level").add_subparsers(
        dest="access_command", required=True, metavar="ACTION")
    reading(access.add_parser("show", help="the current access level, who set it, until when"))
    setp = access.add_parser("set", help="set the access level")
    setp.add_argument("level", choices=LEVELS)
    when = setp.add_mutually_exclusive_group()
    when.add_argument("--for", dest="duration", help="limited only: for how long (90m, 2h, 1d)")
    when.add_argument("--until", help="limited only: until when (ISO 8601; local time without offset)")

    session = sub.add_parser("session", help="remote sessions").add_subparsers(
        dest="session_command", required=True, metavar="ACTION")
    reading(session.add_parser("list", help="open sessions and the latest ended ones"))
    req = session.add_parser("request", help="request a session as the portal would (admin; tests and demo)")
    req.add_argument("--engineer-id", required=True)
    req.add_argument("--name", required=True, help="the engineer's full name")
    req.add_argument("--company", default="")
    req.add_argument("--reason", required=True)
    req.add_argument("--level", choices=SESSION_LEVEL_NAMES, default=AccessLevel.LIMITED.value)
    req.add_argument("--kind", choices=KINDS, default=SessionKind.SERVICE.value)
    reading(req)
    confirm = session.add_parser("confirm", help="confirm a session after reading the privacy disclaimer")
    confirm.add_argument("session_id")
    confirm.add_argument("--level", choices=SESSION_LEVEL_NAMES, help="level for this session alone")
    confirm.add_argument("--accept-disclaimer", action="store_true",
                         help="accept the data-privacy disclaimer without the question (scripts)")
    claim = session.add_parser("claim", help="type in the session ID the engineer gave you: see who and why, "
                                             "then accept or decline")
    claim.add_argument("session_id", help="8 digits, e.g. 1234 5678")
    claim.add_argument("--level", choices=SESSION_LEVEL_NAMES, help="level for this session alone (default: "
                                                                    "what the engineer asked for)")
    claim.add_argument("--accept-disclaimer", action="store_true",
                       help="accept the data-privacy disclaimer without the question (scripts)")
    session.add_parser("decline", help="decline a session waiting for consent").add_argument("session_id")
    authenticate = session.add_parser("authenticate", help="check the engineer's one-time password (admin; the "
                                                           "portal relays it)")
    authenticate.add_argument("session_id")
    authenticate.add_argument("--code", required=True, help="the 6-digit code")
    session.add_parser("activity", help="the engineer did something: reset the idle timer (admin; tests and demo)"
                       ).add_argument("session_id")
    end = session.add_parser("end", help="the engineer ends a session normally (admin; the portal does this)")
    end.add_argument("session_id", nargs="?")
    end.add_argument("--summary", default="",
                     help="the engineer's summary: shown at the console, kept in the audit log")

    up = reading(sub.add_parser("upload", help="de-identify DICOM files or folders and send them to the portal"))
    up.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    up.add_argument("--case", default="", help="the service case it belongs to (default: the session's case)")
    up.add_argument("--session", default="", help="the session it is for (default: the one active session)")
    up.add_argument("--wait", type=float, default=0, help="seconds to wait until the portal accepted or rejected "
                                                          "every file (default: do not wait)")
    reading(sub.add_parser("uploads", help="the upload queue: each file and its state"))

    service = reading(sub.add_parser("request-service", help="ask the service centre for help: your description "
                                                             "and a technical system report; prints the case number"))
    service.add_argument("text", help="the problem in a few words (3 to 500 characters, one line); no patient data")
    service.add_argument("--urgency", required=True, choices=[u.value for u in Urgency],
                         help=" ".join(f"{u.value}: {u.meaning}" for u in Urgency))
    reading(sub.add_parser("service-requests", help="the service requests made here: state and case number"))

    update = sub.add_parser("update", help="updates from the service centre (TUF-verified; installed only after "
                            "approval)").add_subparsers(dest="update_command", required=True, metavar="ACTION")
    reading(update.add_parser("list", help="the updates offered to this device and their state"))
    reading(update.add_parser("show", help="one update: what, from whom, signed by, size, restart or examination "
                                           "downtime, release notes")).add_argument("update_id")
    update.add_parser("approve", help="install a waiting update").add_argument("update_id")
    reject = update.add_parser("reject", help="reject a waiting update (its file is deleted)")
    reject.add_argument("update_id")
    reject.add_argument("--reason", default="", help="why, for the audit log and the vendor")
    postpone = update.add_parser("postpone", help="ask again later")
    postpone.add_argument("update_id")
    postpone.add_argument("--until", required=True, help="ISO 8601 (local time without offset), at most 30 days "
                                                         "ahead")
    screen = sub.add_parser("screen", help="the console's screen shared with an engineer (application support)"
                            ).add_subparsers(dest="screen_command", required=True, metavar="ACTION")
    reading(screen.add_parser("list", help="the screens shared now, and whether the engineer may control them"))
    control = screen.add_parser("control", help="let the engineer control the console (on), or only watch (off)")
    control.add_argument("state", choices=("on", "off"))
    control.add_argument("--session", default="", metavar="ID",
                         help="the session whose screen is shared (default: the one sharing now)")
    announce = sub.add_parser("announce-upgrade", help="warn the console of an upgrade and end open sessions "
                              "(reason upgrade) after a while (admin; servicegate-install upgrade does this)")
    announce.add_argument("version", help="the version being installed")
    announce.add_argument("--in", dest="in_s", type=int, default=60, metavar="SECONDS",
                          help="seconds until open sessions end (default 60)")
    kill = reading(sub.add_parser("kill", help="the kill switch: stop every task, end every session now and set "
                                               "access to no-access"))
    kill.add_argument("--reason", default="", help="free text for the audit log")

    task = sub.add_parser("task", help="service tasks of remote sessions").add_subparsers(
        dest="task_command", required=True, metavar="ACTION")
    reading(task.add_parser("list", help="waiting, running and recent tasks, with their output"))
    reading(task.add_parser("catalog", help="the task kinds this device offers"))
    run = reading(task.add_parser("run", help="ask for a task as the session's engineer (admin; the portal does "
                                             "this; tests and demo)"))
    run.add_argument("kind", help="a task kind of the catalog")
    run.add_argument("params", nargs="*", metavar="NAME=VALUE", help="the task's parameters")
    run.add_argument("--session", required=True, help="the active session")
    run.add_argument("--engineer-id", required=True, help="the engineer asking (the session's)")
    release = task.add_parser("release", help="send the files a task left in quarantine, after the privacy "
                                              "disclaimer")
    release.add_argument("task_id")
    release.add_argument("--accept-disclaimer", action="store_true",
                         help="you read the data-privacy disclaimer and accept it (else you are asked)")
    for action, help in (("confirm", "allow a waiting application-support task"),
                         ("decline", "decline a waiting task"), ("stop", "stop a running task")):
        task.add_parser(action, help=help).add_argument("task_id")

    exams = sub.add_parser("examinations", help="the examination block (no agent needed: site IT, the unit's stop "
                                                "hook)").add_subparsers(dest="exam_command", required=True,
                                                                        metavar="ACTION")
    exams.add_parser("release", help="release the examination block now (the unit's ExecStopPost runs this)")
    exams.add_parser("status", help="ask the modality whether examinations are blocked")

    audit = sub.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION")
    verify = reading(audit.add_parser("verify", help="check the hash chain and signed checkpoints"))
    verify.add_argument("--against-portal", action="store_true",
                        help="also compare with the checkpoint heads the portal holds (finds records cut off the end)")
    exp = audit.add_parser("export", help="who accessed this system, when, at which level, for what")
    exp.add_argument("--since", help="ISO 8601 (local time without offset)")
    exp.add_argument("--until", help="ISO 8601 (local time without offset)")
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    exp.add_argument("--json", action="store_true", help="the same as --format json")

    enroll = sub.add_parser("enroll", help="make this device known to the vendor's portal (site IT, once; no agent "
                                           "needed)")
    enroll.add_argument("--portal", required=True, metavar="URL", help="the portal's address, https://...")
    enroll.add_argument("--ca-fingerprint", required=True, metavar="SHA256",
                        help="the SHA-256 fingerprint of the vendor CA, as the vendor gave it")
    enroll.add_argument("--otp", required=True, metavar="CODE", help="the one-time enrollment password")
    enroll.add_argument("--device-id", required=True, metavar="ID", help="the device ID the vendor registered")

    event = sub.add_parser("event", help="report a scan or an error (the scanner software)")
    event.add_argument("kind", choices=EVENT_KINDS)
    event.add_argument("--detail", default="", help="short technical text; never patient data")

    telemetry = sub.add_parser("telemetry", help="what the device reports to the service centre (no agent needed)")
    telemetry_sub = telemetry.add_subparsers(dest="telemetry_command", required=True, metavar="ACTION")
    collect = telemetry_sub.add_parser("collect", help="take one sample of the system's figures and print it")
    collect.add_argument("--once", action="store_true", required=True, help="one sample, now (the agent samples "
                                                                            "on its schedule)")
    collect.add_argument("--json", action="store_true", help="print the sample as JSON")
    telemetry_status = telemetry_sub.add_parser("status", help="the outbox: what waits to be sent, what was shed")
    telemetry_status.add_argument("--json", action="store_true", help="print as JSON")

    anon = sub.add_parser("anonymize", help="de-identify DICOM files before they leave (needs no running agent)")
    anon.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                      help="DICOM files, or folders searched recursively")
    anon.add_argument("--out", type=Path, required=True, metavar="DIR",
                      help="output folder: DIR/<study>/<series>/<instance>.dcm, named by the new UIDs")
    anon.add_argument("--option", action="append", metavar="NAME",
                      help=f"a profile option, repeatable: {', '.join(o.value for o in Option)} "
                           "(default: [anonymizer] options in agent.toml)")
    anon.add_argument("--safe-private", type=Path, metavar="FILE",
                      help="more safe private attributes, kept under --option retain-safe-private: a CSV with the "
                           "columns of the standard's list (Data Element, Private Creator, VR, VM, Meaning) "
                           "(default: [anonymizer] safe_private)")
    anon.add_argument("--pixel-rules", type=Path, metavar="FILE",
                      help="Clean Pixel Data: a TOML file of [[rule]] tables (manufacturer, model, modality, rows, "
                           "columns, rectangles); a matching image has its rectangles blanked and is sent despite "
                           "burned-in text (default: [anonymizer] pixel_rules)")
    anon.add_argument("--key-file", type=Path, metavar="FILE",
                      help="the site's pseudonym key (default <state_dir>/keys/anonymizer.key, from agent.toml)")
    anon.add_argument("--report", type=Path, metavar="FILE",
                      help="write the batch report as JSON (keep it on the device)")
    anon.add_argument("--jobs", type=int, metavar="N", help="worker processes (default: [anonymizer] jobs, 1)")
    anon.add_argument("--quiet", action="store_true", help="no progress line and no summary; refusals still shown")
    return parser


def load_config(path: Path | None, *, required: bool) -> Config:
    """The given file, else the default one; a client may run with defaults when there is none."""
    if path is not None:
        return load(path)
    if DEFAULT_CONFIG_PATH.exists() or required:
        return load(DEFAULT_CONFIG_PATH)
    return defaults()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from agent.daemon import run  # only the daemon needs asyncio and the agent core

            return run(load_config(args.config, required=True))
        if args.command == "ui":  # a program of its own: the agent package never imports Qt
            config = load_config(args.config, required=False)
            os.execv(sys.executable, [sys.executable, "-m", "consent_ui", "--socket",
                                      str(config.paths.control_socket)])
        if args.command == "anonymize":
            return anonymize(args)  # a local job over the anonymizer library: no agent needed
        config = load_config(args.config, required=False)
        if args.command == "enroll":
            return enroll_command(args, config)  # talks to the portal, writes the state folder: no agent needed
        if args.command == "telemetry":
            return telemetry_command(args, config)  # reads the system and the outbox file: no agent needed
        if args.command == "examinations":
            return examinations_command(args, config)  # calls the modality's tool: works with the agent stopped
        timeout = {"upload": UPLOAD_TIMEOUT_S, "kill": KILL_TIMEOUT_S,
                   "request-service": REQUEST_TIMEOUT_S}.get(args.command, 10)
        try:
            with Client(config.paths.control_socket, timeout_s=timeout) as client:
                client.connect()
                return dispatch(args, client)
        except AgentUnreachableError:
            if args.command == "audit" and os.access(config.paths.audit_dir, os.R_OK | os.X_OK):
                return audit_from_files(args, config)
            raise
    except ServiceGateError as exc:
        print(f"servicegate: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.FAILED)


def dispatch(args: argparse.Namespace, client: Client) -> int:
    command = args.command
    if command == "status":
        return show(args, client.call("status"), format_status)
    if command == "access":
        if args.access_command == "show":
            return show(args, client.call("access_show"), format_grant)
        until = None
        if args.duration:
            until = utc_iso(parse_utc(client.call("status")["now"]) + parse_duration(args.duration))
        elif args.until:
            until = utc_iso(parse_time(args.until))
        grant = client.call("access_set", level=args.level, until=until)
        print(format_grant(grant))
        return 0
    if command == "session":
        return session_command(args, client)
    if command == "kill":
        receipt = client.call("kill", text=args.reason)
        if args.json:
            print(json.dumps(receipt, indent=2))
            return int(ExitCode.PARTIAL) if receipt["problems"] else 0
        ended = ", ".join(receipt["ended_sessions"]) or "none was open"
        stopped = len(receipt.get("stopped_tasks", []))
        print(f"Kill switch done at {local(parse_utc(receipt['at']))}. Sessions ended: {ended}. "
              f"Tasks stopped: {stopped}. Access is now {receipt['access']['level']}.")
        for problem in receipt["problems"]:
            print(f"servicegate: but: {problem}", file=sys.stderr)
        return int(ExitCode.PARTIAL) if receipt["problems"] else 0
    if command == "audit":
        return audit_command(args, lambda: client.call("audit_verify", against_portal=args.against_portal),
                             lambda since, until: client.call("audit_export", since=since, until=until))
    if command == "event":
        client.call("record_event", kind=args.kind, detail=args.detail)
        return 0
    if command == "task":
        return task_command(args, client)
    if command == "upload":
        return upload_command(args, client)
    if command == "uploads":
        return show(args, client.call("upload_list"), format_uploads)
    if command == "request-service":
        request = client.call("service_request", text=args.text, urgency=args.urgency)
        return show(args, request, lambda r: f"{r['message']}\n{format_service_request(r)}")
    if command == "service-requests":
        return show(args, client.call("service_request_list"),
                    lambda rows: "\n".join(map(format_service_request, rows)) or "No service requests.")
    if command == "update":
        return update_command(args, client)
    if command == "screen":
        return screen_command(args, client)
    if command == "announce-upgrade":
        answer = client.call("upgrade_announce", version=args.version, in_s=args.in_s)
        print(f"Announced: open sessions end at {local(parse_utc(answer['at']))} (reason upgrade); no session is "
              "accepted until the agent restarts.")
        return 0
    raise UsageError(f"unknown command {command!r}")  # argparse prevents this


def screen_command(args: argparse.Namespace, client: Client) -> int:
    shares = client.call("screen_list")
    if args.screen_command == "list":
        return show(args, shares, lambda rows: "\n".join(
            f"session {s['session_id']}  engineer {s['engineer_id']}  {s['state']}  "
            f"{'control allowed' if s['control'] else 'view-only'}"
            f"{'' if s['control_possible'] else ' (control needs full access)'}" for s in rows)
            or "No screen is shared.")
    session_id = args.session or (shares[0]["session_id"] if len(shares) == 1 else "")
    if not session_id:
        raise UsageError("no screen is shared now" if not shares else
                         "several screens are shared: name the session with --session")
    changed = client.call("screen_control", session_id=session_id, control=args.state == "on")
    print(f"Session {session_id}: " + ("the engineer may control the console now." if args.state == "on" else
                                      "view-only: the engineer only watches.") + f" ({len(changed)} share(s))")
    return 0


def update_command(args: argparse.Namespace, client: Client) -> int:
    action = args.update_command
    if action == "list":
        return show(args, client.call("update_list"),
                    lambda rows: "\n".join(map(format_update, rows)) or "No updates were offered.")
    if action == "show":
        found = [u for u in client.call("update_list") if u["id"] == args.update_id]
        if not found:
            raise NotFoundError(f"no update with ID {args.update_id!r} (`servicegate update list` shows them)")
        return show(args, found[0], format_update_details)
    if action == "approve":
        print(format_update(client.call("update_approve", update_id=args.update_id)))
    elif action == "reject":
        print(format_update(client.call("update_reject", update_id=args.update_id, reason=args.reason)))
    else:
        until = utc_iso(parse_time(args.until))
        print(format_update(client.call("update_postpone", update_id=args.update_id, until=until)))
    return 0


def format_update(u: dict[str, Any]) -> str:
    size = f"{u['length'] / 1e6:.1f} MB" if u["length"] >= 100_000 else f"{u['length']} bytes"
    state = f"{u['state']} until {local(parse_utc(u['until']))}" if u.get("until") else u["state"]
    return f"{u['id']}  {u['kind']} {u['version']}  {size}  {state}  ({u['name']})"


def format_update_details(u: dict[str, Any]) -> str:
    needs = [n for n, flag in (("a restart", u["restart"]), ("examination downtime", u["downtime"])) if flag]
    lines = [format_update(u), f"  from:        {u['publisher'] or 'the vendor'}",
             f"  signed by:   targets key {', '.join(k[:16] for k in u['signed_by'])} (the vendor's TUF root)",
             f"  sha256:      {u['sha256']}",
             f"  needs:       {', '.join(needs) or 'nothing (no restart, no downtime)'}",
             f"  models:      {', '.join(u['models'])}"]
    if u.get("why"):
        lines.append(f"  why:         {u['why']}")
    return "\n".join([*lines, "  release notes:", *(f"    {line}" for line in (u["notes"] or "-").splitlines())])


def audit_command(args: argparse.Namespace, verify_log: Callable[[], dict[str, Any]],
                  export_log: Callable[[str | None, str | None], list[dict[str, Any]]]) -> int:
    if args.audit_command == "verify":
        result = verify_log()
        if args.json:
            print(json.dumps(result, indent=2))
        elif result["ok"]:
            last = local(parse_utc(result["last_checkpoint"])) if result["last_checkpoint"] else "none yet"
            print(f"intact: {result['records']} records, last checkpoint {last}")
        else:
            print(result["summary"])
        return 0 if result["ok"] else int(ExitCode.FAILED)
    since = utc_iso(parse_time(args.since)) if args.since else None
    until = utc_iso(parse_time(args.until)) if args.until else None
    records = export_log(since, until)
    as_json = args.json or args.format == "json"
    from agent.audit_verify import to_csv  # the audit modules need cryptography: loaded by the commands that use them
    sys.stdout.write(json.dumps(records, indent=2) + "\n" if as_json else to_csv(records))
    return 0


def audit_from_files(args: argparse.Namespace, config: Config) -> int:
    """`audit verify|export` while the agent is down: the same checks, straight from the files."""
    from agent.audit_log import public_key_path
    from agent.audit_verify import export, verify

    audit_dir = config.paths.audit_dir
    key = public_key_path(config.paths.audit_signing_key)
    print(f"servicegate: the agent is not running; reading the audit log from {audit_dir}", file=sys.stderr)

    def when(text: str | None) -> datetime | None:
        return parse_utc(text) if text else None

    def verify_log() -> dict[str, Any]:
        heads = None
        if getattr(args, "against_portal", False):
            from agent.api import portal_heads  # the link's modules: only when the portal is asked
            from agent.uplink import connect

            link, state = connect(config)
            if link is None:
                raise PortalError(f"cannot compare with the portal: {state.error}")
            with link.session:
                heads = portal_heads(link.heads())
        return verify(audit_dir, key, heads=heads).to_dict()

    return audit_command(args, verify_log,
                         lambda since, until: export(audit_dir, when(since), when(until)))


def task_command(args: argparse.Namespace, client: Client) -> int:
    action = args.task_command
    if action == "list":
        return show(args, client.call("task_list"), lambda runs: "\n".join(map(format_task, runs)) or "No tasks.")
    if action == "catalog":
        return show(args, client.call("task_catalog"), format_catalog)
    if action == "run":
        params = dict(_name_value(text) for text in args.params)
        run = client.call("task_run", session_id=args.session, engineer_id=args.engineer_id, kind=args.kind,
                          params=params)
        return show(args, run, format_task)
    if action == "release":
        run = next((t for t in client.call("task_list") if t["id"] == args.task_id), None)
        if run is not None:
            print(format_task(run))
        print(PRIVACY_DISCLAIMER)
        accepted = args.accept_disclaimer or ask_yes("Send these files to the service centre? [yes/no] ")
        run = client.call("task_release", task_id=args.task_id, disclaimer_accepted=accepted)
        print(format_task(run))
        return 0
    print(format_task(client.call(f"task_{action}", task_id=args.task_id)))
    return 0


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UsageError(f"{text!r}: give each parameter as NAME=VALUE, like service=reconstruction")
    return name, value


def format_task(run: dict[str, Any]) -> str:
    params = " ".join(f"{k}={v}" for k, v in run["params"].items())
    line = f"Task {run['id']}: {run['kind']} {params}".rstrip() + f" — {run['state']}"
    if run["stop_reason"]:
        line += f" ({run['stop_reason']})"
    if run["restore"]:
        line += f"; restore {run['restore']}"
    files = [f"  {f['name']}: {f['handling']}" for f in run["files"]]
    return "\n".join([line, *files])


def format_catalog(kinds: list[dict[str, Any]]) -> str:
    lines = []
    for kind in kinds:
        flags = ", ".join(kind["flags"]) or "technical"
        params = " ".join(f"{p['name']}=<{p['type']}>" for p in kind["params"])
        lines.append(f"{kind['kind']:<18} {kind['level']:<8} {flags:<22} {params}")
    return "\n".join(lines)


def examinations_command(args: argparse.Namespace, config: Config) -> int:
    from agent import exam_block  # runs the modality's tool: no agent, no socket

    if args.exam_command == "status":
        answer = exam_block.status(config.modality)
        print(answer)
        return 0 if answer in ("blocked", "unblocked") else int(ExitCode.FAILED)
    ok, detail = exam_block.release(config.modality)
    print("examination block released" if ok else f"servicegate: could not release the examination block: {detail}",
          file=sys.stdout if ok else sys.stderr)
    return 0 if ok else int(ExitCode.FAILED)


def session_command(args: argparse.Namespace, client: Client) -> int:
    action = args.session_command
    if action == "list":
        return show(args, client.call("session_list"), lambda rows: "\n".join(map(format_session, rows))
                    or "No sessions.")
    if action == "request":
        session = client.call("session_request", engineer_id=args.engineer_id, name=args.name,
                              company=args.company, reason=args.reason, level=args.level, kind=args.kind)
        return show(args, session, format_session)
    if action in ("claim", "confirm"):
        if action == "claim":
            session = client.call("session_claim", session_id=args.session_id)
            print(format_claim(session))
        else:
            session = next((s for s in client.call("session_list") if s["id"] == args.session_id), None)
            if session is not None:
                print(format_session(session))
        print(PRIVACY_DISCLAIMER)
        accepted = args.accept_disclaimer or ask_yes("Accept and start the session? [yes/no] ")
        session_id = session["id"] if session is not None else args.session_id
        if not accepted and action == "claim":
            print(format_session(client.call("session_decline", session_id=session_id)))
            return 0
        session = client.call("session_confirm", session_id=session_id, level=args.level,
                              disclaimer_accepted=accepted)
        print(format_session(session))
        return 0
    if action == "decline":
        print(format_session(client.call("session_decline", session_id=args.session_id)))
        return 0
    if action == "authenticate":
        print(format_session(client.call("session_authenticate", session_id=args.session_id, code=args.code)))
        return 0
    if action == "activity":
        print(format_session(client.call("session_activity", session_id=args.session_id)))
        return 0
    print(format_session(client.call("session_end", session_id=args.session_id, text=args.summary)))
    return 0


def upload_command(args: argparse.Namespace, client: Client) -> int:
    """De-identify and queue (the agent does both, as its own user); then, with --wait, follow the queue until the
    portal has answered for every file. Exit 1 when a file was refused here or rejected by the portal."""
    report = client.call("upload", paths=[str(p.resolve()) for p in args.paths], case_id=args.case,
                         session_id=args.session)
    mine = {e["entry_id"] for e in report["entries"]}
    deadline = time.monotonic() + args.wait
    entries = [e for e in client.call("upload_list") if e["entry_id"] in mine]
    while args.wait and any(e["state"] in ("queued", "uploading") for e in entries) and time.monotonic() < deadline:
        time.sleep(0.5)
        entries = [e for e in client.call("upload_list") if e["entry_id"] in mine]
    if args.json:
        print(json.dumps({**report, "entries": entries}, indent=2))
    else:
        print(f"{report['queued']} file(s) de-identified and queued, {report['refused']} refused and kept in "
              f"{report['quarantine_dir']} (never sent).")
        for refusal in report["refusals"]:
            print(f"  refused: {refusal['path']}: {refusal['reason']}")
        print(format_uploads(entries))
        if report["stopped"]:
            print(f"servicegate: de-identification stopped: {report['stopped']}", file=sys.stderr)
    bad = report["refused"] or report["stopped"] or any(e["state"] in ("rejected", "failed") for e in entries)
    return 1 if bad else 0


def format_uploads(entries: list[dict[str, Any]]) -> str:
    lines = [f"  {e['name']}: {e['state']}" + (f" ({e['sent']}/{e['size']} bytes)" if e["state"] == "uploading"
                                                else "") + ("".join(f"\n    {p}" for p in e.get("problems") or []))
             for e in entries]
    return "\n".join(lines) or "No uploads."


def format_service_request(r: dict[str, Any]) -> str:
    case = f"case {r['case_id']}" if r["case_id"] else {"queued": "no case number yet"}.get(r["state"], r["why"])
    return (f"Service request {r['request_id']} ({r['urgency']}, {local(parse_utc(r['requested_at']))}): {r['state']}, "
            f"{case}\n  {r['text']}")


def ask_yes(prompt: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("the privacy disclaimer needs an answer: run this at a terminal, "
                         "or pass --accept-disclaimer if you have read it")
    return input(prompt).strip().lower() in ("y", "yes")


def show(args: argparse.Namespace, value: Any, formatter: Any) -> int:
    print(json.dumps(value, indent=2) if args.json else formatter(value))
    return 0


def format_grant(grant: dict[str, Any]) -> str:
    until = f" until {local(parse_utc(grant['until']))}" if grant.get("until") else ""
    return (f"Access: {grant['level']}{until} (set by {grant['set_by']} at {local(parse_utc(grant['set_at']))})\n"
            f"  {grant['consequence']}")


def format_session(s: dict[str, Any]) -> str:
    engineer = s["engineer"]
    company = f", {engineer['company']}" if engineer.get("company") else ""
    level = s.get("effective_level") or f"asks {s['requested_level']}"
    state = s["state"] + (f" ({s['end_reason']})" if s.get("end_reason") else "")
    said = "Engineer's summary" if s.get("end_reason") == "completed" else "Note"
    summary = f"\n  {said}: {s['end_text']}" if s.get("end_text") else ""
    case = f" (case {s['case_id']})" if s.get("case_id") else ""
    return (f"Session {s['id']}{case}: {state}, {level}, {s['kind']} - {engineer['name']} "
            f"[{engineer['id']}{company}]: {s['reason']}{summary}")


def format_claim(s: dict[str, Any]) -> str:
    """A claimed session, as the technologist must see it before accepting: who, which company, why, which level."""
    engineer = s["engineer"]
    level = AccessLevel(s["requested_level"])
    lines = [f"Session {s['id'][:4]} {s['id'][4:]} ({s['kind']})",
             f"  Engineer: {engineer['name']} (ID {engineer['id']})",
             f"  Company:  {engineer['company'] or '-'}",
             f"  Reason:   {s['reason']}",
             f"  Level:    {level.value}: {level.consequence}"]
    if s.get("case_id"):
        lines.insert(4, f"  Case:     {s['case_id']}")
    return "\n".join(lines)


def format_status(status: dict[str, Any]) -> str:
    lines = [format_grant(status["access"])]
    lines += [format_session(s) for s in status["sessions"]] or ["No open session."]
    if status["examinations_blocked"]:
        lines.append("Examinations are BLOCKED while the full-access session is active.")
    lines += [format_task(run) for run in status.get("tasks", [])]
    portal = status.get("portal", {})
    where = f" {portal['portal_url']} as {portal['device_id']}" if portal.get("portal_url") else ""
    lines.append(f"Portal{where}: {portal.get('state', 'unknown')}" +
                 (f" ({portal['error']})" if portal.get("error") else ""))
    return "\n".join(lines)


def enroll_command(args: argparse.Namespace, config: Config) -> int:
    from agent.enroll import enroll  # only enrollment needs requests and the certificate code

    enrollment = enroll(config, args.portal, args.ca_fingerprint, args.otp, args.device_id)
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(enrollment.cert_file.read_bytes())
    print(f"Enrolled {enrollment.device_id} with {enrollment.portal_url}.")
    print(f"Device certificate valid until {local(certificate.not_valid_after_utc)}; the agent renews it by itself.")
    print(f"Key, certificate and the vendor CA are in {enrollment.directory} (the key never leaves this machine).")
    print("Restart the agent (systemctl restart servicegate) to connect.")
    return 0


# ---- telemetry ------------------------------------------------------------------------------------


def telemetry_command(args: argparse.Namespace, config: Config) -> int:
    from telemetry.collectors import Collector  # only these commands need psutil and the outbox
    from telemetry.outbox import Outbox, OutboxError

    if args.telemetry_command == "collect":
        sample = Collector(None, mounts=config.telemetry.mounts, processes=config.telemetry.processes).sample()
        if args.json:
            print(json.dumps(sample, indent=2))
        else:
            for point in sample["points"]:
                where = ", ".join(f"{k}={v}" for k, v in point["attributes"].items())
                print(f"{point['name']}{f' ({where})' if where else ''}: {point['value']} {point['unit']}".rstrip())
        return 0
    path = config.paths.outbox
    if not path.exists():
        print(f"No outbox yet at {path}: the agent creates it when it first queues telemetry.")
        return 0
    if not os.access(path, os.R_OK | os.W_OK):
        raise PermissionDeniedError(f"cannot open the outbox {path}: run this as root or as the agent's service user")
    try:
        with Outbox(path, cap_bytes=config.telemetry.outbox_cap_mb * 1024 * 1024) as outbox:
            status = outbox.status()
    except OutboxError as exc:
        raise UsageError(str(exc)) from None
    return show(args, status.to_dict(), format_outbox_status)


def format_outbox_status(status: dict[str, Any]) -> str:
    def when(epoch: float | None) -> str:
        return local(datetime.fromtimestamp(epoch, UTC)) if epoch is not None else "never"

    age = status["oldest_age_s"]
    lines = [f"Waiting to be sent: {status['records']} records, {status['bytes'] / 2**20:.1f} MiB of "
             f"{status['cap_bytes'] / 2**20:.0f} MiB" + (f"; the oldest is {age / 60:.0f} minutes old" if age else ""),
             f"Last successful push: {when(status['last_push'])}",
             f"Last error: {status['last_error'] or 'none'}"]
    if status["quarantined"]:
        lines.append(f"Quarantined (refused by the receiver, kept here): {status['quarantined']} records")
    if status["shed"]:
        shed = ", ".join(f"{n} {kind}" for kind, n in sorted(status["shed"].items()))
        lines.append(f"Shed over the size cap: {shed}")
    return "\n".join(lines)


# ---- anonymize ------------------------------------------------------------------------------------


def anonymize(args: argparse.Namespace) -> int:
    """De-identify files into --out; exit 0 when all were, 3 when some were refused (listed on stderr), 1 when
    the batch had to stop (the output could not be written) or the report could not be written."""
    from anonymizer.batch import collect_inputs, run_batch  # only this command needs pydicom
    from anonymizer.errors import KeyFileError, ProfileError
    from anonymizer.pixels import load_rules
    from anonymizer.profile import read_safe_private

    config = load_config(args.config, required=False)
    settings = config.anonymizer
    jobs = args.jobs if args.jobs is not None else settings.jobs
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (one worker process per core is the most useful), not {jobs}")
    # Each setting from the command line when given there, else from agent.toml; an error names its source.
    section = f"{config.source or 'the built-in configuration'}: [anonymizer]"
    given = {"options": args.option is not None, "safe_private": args.safe_private is not None,
             "pixel_rules": args.pixel_rules is not None}
    rules_file = args.pixel_rules if given["pixel_rules"] else settings.pixel_rules
    private_file = args.safe_private if given["safe_private"] else settings.safe_private
    try:
        what = "--option" if given["options"] else f"{section} options"
        options = validate_options(args.option if given["options"] else list(settings.options))
        what = "--pixel-rules" if given["pixel_rules"] else f"{section} pixel_rules"
        pixel_rules = load_rules(rules_file) if rules_file != Path("") else ()
        what = "--safe-private" if given["safe_private"] else f"{section} safe_private"
        safe_private = read_safe_private(private_file) if private_file != Path("") else ()
    except ProfileError as exc:
        raise UsageError(f"{what}: {exc}") from None
    if Option.CLEAN_PIXEL_DATA in options and not pixel_rules:
        raise UsageError("the option 'clean-pixel-data' needs --pixel-rules FILE: the rules say which rectangles of "
                         "whose images to blank (see docs/deidentification.md). With --pixel-rules, the option is "
                         "implied.")
    out: Path = args.out
    key_file: Path = args.key_file or config.paths.anonymizer_key
    if args.report is not None and args.report.resolve().is_relative_to(out.resolve()):
        raise UsageError(f"the report {args.report} would be inside the output folder {out}, which is meant to "
                         "leave the device; the report names the input files, and file names can carry patient "
                         "names. Write it somewhere else.")
    inputs = collect_inputs(args.inputs)
    if not inputs:
        raise UsageError(f"no files found in {', '.join(map(str, args.inputs))}; give DICOM files, or folders "
                         "that contain them.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {out}: {exc.strerror}. Choose another --out.") from None
    line = ProgressLine(sys.stderr) if sys.stderr.isatty() and not args.quiet else None
    try:
        batch = run_batch(inputs, out, options=options, key_file=key_file, jobs=jobs, progress=line,
                          pixel_rules=pixel_rules, safe_private=safe_private)
    except KeyFileError as exc:
        hint = "" if args.key_file else (
            " The default key lives with the agent's state: run this as root or as the agent's service user, or "
            "pass --key-file FILE (outside the output folder; the same key gives the same pseudonyms, a new key "
            "gives new ones).")
        raise UsageError(f"{exc}{hint}") from None
    finally:
        if line is not None:
            line.close()
    for result in batch.results:
        if result.status == "refused":
            print(f"servicegate: refused {result.source}: {result.reason}", file=sys.stderr)
    if not args.quiet:
        print(format_batch(batch, out))
    failed = False
    if batch.stopped:
        failed = True
        print(f"servicegate: stopped after {len(batch.results)} of {len(inputs)} files: {batch.stopped}. The files "
              f"already in {out} are complete. Fix the cause (free space, permissions) and run the same command "
              "again: the same inputs get the same names, so nothing is duplicated.", file=sys.stderr)
    if args.report is not None:
        try:  # 0600: the report lists input file names, which may carry patient names
            atomic_write(args.report, (json.dumps(batch.to_dict(), indent=2) + "\n").encode(), mode=0o600)
        except OSError as exc:
            failed = True
            print(f"servicegate: cannot write the report {args.report}: {exc.strerror}; the files were "
                  "processed all the same (see above).", file=sys.stderr)
    if failed:
        return int(ExitCode.FAILED)
    return int(ExitCode.PARTIAL) if batch.refused else 0


def format_progress(progress: Progress) -> str:
    rate = progress.mb_per_s
    speed = f"{rate:.1f} MB/s" if rate is not None else "-- MB/s"
    return f"{progress.done} of {progress.total} files, {speed}, {progress.refused} refused"


def format_batch(batch: BatchReport, out: Path) -> str:
    mb = batch.bytes_in / 1e6
    rate = f", {mb / batch.elapsed_s:.1f} MB/s" if batch.elapsed_s > 0 else ""
    text = (f"De-identified {batch.accepted} of {len(batch.results)} files ({mb:.1f} MB in {batch.elapsed_s:.1f} s"
            f"{rate}) into {out}.")
    if batch.refused:
        text += f" {batch.refused} refused, each listed with its reason; nothing of them was written to {out}."
        if any(r.quarantined for r in batch.results):
            text += f" Each refusal is recorded in {batch.quarantine_dir}, which stays on this device."
    return text


class ProgressLine:
    """One line on the terminal, redrawn in place: at most ten times a second, and always for the last file."""

    INTERVAL_S = 0.1

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drawn_at: float | None = None

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        last = progress.done == progress.total
        if self.drawn_at is not None and not last and now - self.drawn_at < self.INTERVAL_S:
            return
        self.drawn_at = now
        self.stream.write("\r" + format_progress(progress) + "\x1b[K")  # \x1b[K: clear what a longer line left
        self.stream.flush()

    def close(self) -> None:
        if self.drawn_at is not None:
            self.stream.write("\n")
            self.stream.flush()


if __name__ == "__main__":
    raise SystemExit(main())
