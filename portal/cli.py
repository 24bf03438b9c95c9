"""`servicegate-portal`: the reference vendor portal (docs/protocol.md), for tests, the demo and site acceptance
tests. Not part of the device install.

    servicegate-portal serve --data-dir DIR [--host 127.0.0.1] [--port 8443] [--relay-port 0]
    servicegate-portal device add --data-dir DIR --device-id ID
    servicegate-portal device list --data-dir DIR
    servicegate-portal inbox post --data-dir DIR --device-id ID --type session_end --body '{"session_id": "..."}'
    servicegate-portal show --data-dir DIR --device-id ID      (what the portal holds for a device, JSON)
    servicegate-portal events --data-dir DIR                   (the portal's own log: enrollments, refusals)

Updates (the portal's TUF repository, `<data_dir>/tuf/`; docs/protocol.md, "Updates (TUF)"):

    servicegate-portal publish FILE --data-dir DIR --kind software|virus-patterns|configuration --version V \
        --models M1,M2 [--software-versions 0.1.0,0.2.0] [--restart] [--downtime] [--notes TEXT] \
        [--publisher NAME] [--offer-to DEVICE_ID ... | --no-offer]
    servicegate-portal updates --data-dir DIR [--device ID] [--json]   (what is published; a device's offers, reports)
    servicegate-portal tuf refresh --data-dir DIR              (sign a new timestamp; for a long-running portal)

The engineer's tool (the vendor's own would sit behind its engineers' two-factor login):

    servicegate-portal engineer open-session --data-dir DIR --device ID --engineer-id E --name "..." \
        --company "..." --reason "..." --level limited|full --kind service|application-support [--case-id C] \
        [--request]
    servicegate-portal engineer totp --data-dir DIR --device ID            (the current one-time password)
    servicegate-portal engineer authenticate --data-dir DIR --session S --code C
    servicegate-portal engineer end-session --data-dir DIR --session S --summary "..."
    servicegate-portal engineer sessions --data-dir DIR --device ID       (JSON)
    servicegate-portal engineer cases --data-dir DIR --device ID          (the service cases, JSON)
    servicegate-portal engineer run-task --data-dir DIR --session S --kind K [--param NAME=VALUE]... [--wait S]
    servicegate-portal engineer stop-task --data-dir DIR --session S --task T
    servicegate-portal engineer tasks --data-dir DIR --session S           (JSON)
    servicegate-portal engineer task-file --data-dir DIR --session S --task T --name N --out FILE
    servicegate-portal engineer screen --data-dir DIR --session-id S [--wait SECONDS]
                                                    (the newest screen share: viewer address and VNC password, JSON)

The data folder holds the vendor CA, the server certificate, `portal.sqlite` and the TUF repository (`tuf/`); the
commands other than `serve` work on it directly, with or without a running server.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from portal.store import CLAIM_VALID_S, MESSAGE_TYPES, OTP_VALID_S, SESSION_KINDS, SESSION_LEVELS, Store

DEFAULT_PORT = 8443


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data_dir: Path = args.data_dir
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if args.command == "serve":
            return _serve(data_dir, args.host, args.port, args.cert_days, args.relay_port)
        store = Store(data_dir / "portal.sqlite")
        if args.command == "device" and args.action == "add":
            otp = store.add_device(args.device_id)
            print(f"device {args.device_id}: one-time enrollment password {otp}")
            print(f"valid for {OTP_VALID_S // 60} minutes, once; locked after 5 wrong tries.")
        elif args.command == "device":
            print(json.dumps(store.devices(), indent=2))
        elif args.command == "inbox":
            try:
                body = json.loads(args.body)
                if not isinstance(body, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                print(f"servicegate-portal: --body is not a JSON object ({exc})", file=sys.stderr)
                return 2
            print(store.post(args.device_id, args.type, body).id)
        elif args.command == "show":
            _show(store, args.device_id)
        elif args.command == "engineer":
            return _engineer(store, args)
        elif args.command == "publish":
            return _publish(store, data_dir, args)
        elif args.command == "updates":
            return _updates(store, data_dir, args)
        elif args.command == "tuf":
            return _tuf(data_dir)
        else:
            print(json.dumps(store.events(), indent=2))
    except OSError as exc:
        print(f"servicegate-portal: {exc.strerror or exc}: {exc.filename or data_dir}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"servicegate-portal: {exc}", file=sys.stderr)
        return 2
    return 0


def _publish(store: Store, data_dir: Path, args: argparse.Namespace) -> int:
    """Publish an update in the TUF repository, then offer it: to the devices named with --offer-to, or else to every
    registered device (each checks the signed metadata and takes only what is meant for its model and version);
    --no-offer offers it to none."""
    from portal.updates import DEFAULT_PUBLISHER, publish  # the updates module loads FastAPI: only when needed

    offer_to = list(dict.fromkeys(_split(args.offer_to)))
    if offer_to and args.no_offer:
        raise ValueError("--offer-to and --no-offer exclude each other")
    unknown = [device_id for device_id in offer_to if store.device(device_id) is None]
    if unknown:
        raise ValueError(f"--offer-to: no device {', '.join(unknown)} is registered (`servicegate-portal device "
                         "list`); nothing was published")
    target = publish(data_dir, args.file, args.kind, args.version, _split(args.models),
                     _split(args.software_versions), restart=args.restart, downtime=args.downtime, notes=args.notes,
                     publisher=args.publisher or DEFAULT_PUBLISHER)
    custom = target["custom"]
    store.log(None, "update_published", f"{target['name']}: {custom['kind']} {custom['version']} for "
                                        f"{', '.join(custom['models'])}, sha256 {target['sha256']}")
    print(target["name"])
    print(f"{custom['kind']} {custom['version']} for {', '.join(custom['models'])}; {target['length']} bytes, sha256 "
          f"{target['sha256']}; signed as targets v{target['targets']}, snapshot v{target['snapshot']}, timestamp "
          f"v{target['timestamp']}")
    recipients = [] if args.no_offer else offer_to or [device["device_id"] for device in store.devices()]
    for device_id in recipients:
        message = store.post(device_id, "update_offer", {"target": target["name"]})
        print(f"offered to {device_id} (message {message.id})")
    if not recipients:
        print("offered to no device" + ("" if args.no_offer else ": none is registered"))
    return 0


def _updates(store: Store, data_dir: Path, args: argparse.Namespace) -> int:
    """What is published (name, size, hash, custom metadata); with --device, that device's offers and reports."""
    from portal.updates import Repository

    if args.device_id:
        if store.device(args.device_id) is None:
            raise ValueError(f"no device {args.device_id!r} is registered (`servicegate-portal device list`)")
        offers = [{"target": m["body"].get("target"), "message": m["id"], "created": m["created"],
                   "acknowledged": m["acknowledged"]}
                  for m in store.messages(args.device_id) if m["type"] == "update_offer"]
        reports = store.update_reports(args.device_id)
        if args.json:
            print(json.dumps({"device_id": args.device_id, "offers": offers, "reports": reports}, indent=2))
            return 0
        print(f"device {args.device_id}: {len(offers)} offer(s), {len(reports)} report(s)")
        for offer in offers:
            seen = "acknowledged " + _when(offer["acknowledged"]) if offer["acknowledged"] else "not fetched yet"
            print(f"  offered  {_when(offer['created'])}  {offer['target']}  ({seen})")
        for report in reports:
            print(f"  {report['outcome']:<9}{_when(report['time'])}  {report['target']} {report['version']}"
                  + (f": {report['detail']}" if report["detail"] else ""))
        return 0
    published = Repository(data_dir).published()
    if args.json:
        print(json.dumps(published, indent=2))
        return 0
    if not published:
        print("nothing is published yet (`servicegate-portal publish`)")
    for target in published:
        custom = target["custom"]
        agents = ", ".join(custom.get("software_versions") or []) or "any"
        print(f"{target['name']}\n  {custom.get('kind')} {custom.get('version')} for "
              f"{', '.join(custom.get('models', []))}; ServiceGate {agents}; restart: "
              f"{'yes' if custom.get('restart') else 'no'}; examination downtime: "
              f"{'yes' if custom.get('downtime') else 'no'}\n  {target['length']} bytes, sha256 {target['sha256']}, "
              f"published by {custom.get('publisher')}")
        for line in str(custom.get("notes", "")).splitlines():
            print(f"  | {line}")
    return 0


def _tuf(data_dir: Path) -> int:
    """`tuf refresh`: a new timestamp (it expires after a day), and a new version of whatever else is close to its
    expiry. A running portal does this by itself every hour; this is for a portal run otherwise, or by hand."""
    from portal.updates import Repository

    repository = Repository(data_dir)
    signed = repository.refresh()
    print("signed " + ", ".join(f"{role} v{version}" for role, version in signed.items()))
    return 0


def _split(values: list[str] | None) -> list[str]:
    """Options given as `a,b`, repeated, or both, as one list."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _engineer(store: Store, args: argparse.Namespace) -> int:
    """The engineer's side of a session. What the device did comes back as its session events; `authenticate` and
    `end-session` wait up to --wait seconds for them and say what happened."""
    action = args.action
    if action == "open-session":
        session_id = store.open_session(args.device_id, engineer_id=args.engineer_id, name=args.name,
                                        company=args.company, reason=args.reason, level=args.level, kind=args.kind,
                                        case_id=args.case_id)
        print(session_id)
        print(f"Read it out to the technologist as {session_id[:4]} {session_id[4:]}; it must be claimed at the "
              f"console within {CLAIM_VALID_S // 60} minutes.")
        if args.request:  # under a standing grant the device may take it without the ID being typed in
            store.post(args.device_id, "session_request", {
                "session_id": session_id, "engineer_id": args.engineer_id, "name": args.name,
                "company": args.company, "reason": args.reason, "level": args.level, "kind": args.kind,
                "case_id": args.case_id})
            print("Requested from the device directly as well (within its standing grant).")
        return 0
    if action == "totp":
        secret = store.totp_secret(args.device_id)
        if not secret:
            raise ValueError(f"device {args.device_id!r} has no one-time-password secret: is it enrolled?")
        print(TOTP(base64.b32decode(secret), 6, SHA1(), 30).generate(int(time.time())).decode())
        return 0
    if action == "sessions":
        print(json.dumps(store.sessions(args.device_id), indent=2))
        return 0
    if action == "cases":
        print(json.dumps(store.cases(args.device_id), indent=2))
        return 0
    session = store.session(args.session)
    if session is None:
        raise ValueError(f"no session {args.session!r}; `engineer sessions --device ID` lists them")
    if action in ("run-task", "stop-task", "tasks", "task-file"):
        return _task(store, session, args)
    if action == "screen":
        return _screen(store, session, args.wait)
    if action == "authenticate":
        store.post(session["device_id"], "session_authenticate", {"session_id": args.session, "code": args.code})
        done = _wait(store, session, args.wait, lambda s: s["state"] in ("active", "ended") or
                     s["auth_failures"] > session["auth_failures"] or s["note"].startswith("refused"))
    else:
        store.post(session["device_id"], "session_end", {"session_id": args.session, "text": args.summary})
        done = _wait(store, session, args.wait, lambda s: s["state"] == "ended" or s["note"].startswith("refused"))
    if done is None:
        print(f"sent; the device has not answered within {args.wait} s (`engineer sessions` shows it later)")
        return 1
    print(f"session {args.session}: {done['state']}" + (f" ({done['end_reason']})" if done["end_reason"] else "")
          + (f"; {done['note']}" if done["note"] else ""))
    wanted = "active" if action == "authenticate" else "ended"
    return 0 if done["state"] == wanted and not done["note"].startswith("refused") else 1


def _task(store: Store, session: dict[str, Any], args: argparse.Namespace) -> int:
    """The engineer's tasks: ask for one (the portal names the run, so its events can be followed), stop one, list
    them. `run-task --wait S` waits for the run's end and prints what the device sent (scrubbed, files by type)."""
    device_id = session["device_id"]
    if args.action == "tasks":
        runs = [{**run, "released_files": store.task_files(device_id, str(run.get("id", "")))}
                for run in store.tasks(device_id, args.session)]
        print(json.dumps(runs, indent=2))
        return 0
    if args.action == "task-file":
        data = store.task_file(device_id, args.task, args.name)
        if data is None:
            raise ValueError(f"no released file {args.name!r} of task {args.task!r}; `engineer tasks` lists them")
        args.out.write_bytes(data)
        print(f"{args.out}: {len(data)} bytes")
        return 0
    if args.action == "stop-task":
        store.post(device_id, "task_stop", {"session_id": args.session, "task_id": args.task})
        print(f"asked the device to stop task {args.task}")
        return 0
    params = dict(_name_value(text) for text in args.param)
    task_id = f"pt-{secrets.token_hex(6)}"
    store.post(device_id, "task_request", {"session_id": args.session, "engineer_id": session["engineer_id"],
                                           "kind": args.kind, "params": params, "task_id": task_id})
    print(task_id)
    if args.wait <= 0:
        return 0
    asked_at = time.time()
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        run = next((t for t in store.tasks(device_id, args.session) if t.get("id") == task_id), None)
        if run is not None and run.get("state") not in ("waiting", "running"):
            print(json.dumps(run, indent=2))
            return 0 if run["state"] == "completed" else 1
        now = store.session(args.session) or {}
        note = str(now.get("note", ""))
        if run is None and now.get("updated", 0) >= asked_at and note.startswith("refused") and "task" in note:
            print(f"the device refused the task: {note}")
            return 1
        time.sleep(0.2)
    print(f"sent; the task has not ended within {args.wait} s (`engineer tasks` shows it later)")
    return 1


def _screen(store: Store, session: dict[str, Any], wait_s: float) -> int:
    """The session's newest screen share, with what the engineer's VNC viewer needs: `viewer` (vncdotool's
    HOST::PORT), `port` and `password`. With a wait, until one is `waiting` or `viewing`."""
    session_id = session["session_id"]
    deadline = time.monotonic() + wait_s
    while True:
        shares = store.screens(session_id=session_id, passwords=True)
        newest = shares[-1] if shares else None
        if newest is not None and (wait_s <= 0 or newest["state"] in ("waiting", "viewing")):
            print(json.dumps({"viewer": f"127.0.0.1::{newest['viewer_port']}", "port": newest["viewer_port"],
                              **newest}, indent=2))
            return 0
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if newest is None:
        print(f"servicegate-portal: session {session_id} has no screen share"
              + (f" after {wait_s:g} s" if wait_s > 0 else "")
              + f" (session state: {session['state']}); the device shares its screen when the technologist allows "
                "it in an active session", file=sys.stderr)
    else:
        print(f"servicegate-portal: the newest screen share of session {session_id} ended ({newest['end_reason']}) "
              f"and no other came within {wait_s:g} s; run without --wait to see it", file=sys.stderr)
    return 1


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"{text!r}: give each parameter as NAME=VALUE, like service=reconstruction")
    return name, value


def _wait(store: Store, before: dict[str, Any], wait_s: float,
          done: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        now = store.session(before["session_id"])
        if now is not None and now["updated"] > before["updated"] and done(now):
            return now
        time.sleep(0.2)
    return None


def _serve(data_dir: Path, host: str, port: int, cert_days: int, relay_port: int) -> int:
    # The server's modules are loaded only here: the other commands need nothing but SQLite.
    import uvicorn

    from portal.app import create_app
    from portal.pki import PortalPki
    from portal.relay import Relay
    from portal.tlsproto import TLSH11Protocol
    from portal.updates import Repository

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pki = PortalPki(data_dir, server_names=tuple(dict.fromkeys((host, "127.0.0.1", "localhost"))))
    repository = Repository(data_dir)
    repository.refresh(force=("snapshot", "timestamp"))  # fresh expiries at every start
    # Both ports are bound here, before the server runs, so that a port in use is said plainly and port 0's
    # choice can be printed.
    sock = _listen(host, port, "--port")
    relay_sock = _listen(host, relay_port, "--relay-port")
    if sock is None or relay_sock is None:
        return 1
    store = Store(data_dir / "portal.sqlite")
    relay = Relay(store, pki, relay_sock, host=host)
    app = create_app(store, pki, cert_days=cert_days, repository=repository, relay=relay)
    url = f"https://{host}:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, http=TLSH11Protocol, log_level="warning", access_log=False,
                            ssl_certfile=str(pki.server_cert), ssl_keyfile=str(pki.server_key),
                            ssl_ca_certs=str(pki.ca_file), ssl_cert_reqs=ssl.CERT_OPTIONAL,
                            timeout_graceful_shutdown=2)
    print(f"ServiceGate reference portal at {url}", flush=True)
    print(f"relay at {host}:{relay.port}", flush=True)
    print(f"vendor CA SHA-256 fingerprint: {pki.fingerprint}", flush=True)
    print(f"data: {data_dir}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _listen(host: str, port: int, option: str) -> socket.socket | None:
    """A TCP socket bound to host:port, or None after saying why not."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"servicegate-portal: cannot listen on {host}:{port} ({exc.strerror}); choose another {option}",
              file=sys.stderr)
        return None
    return sock


def _show(store: Store, device_id: str) -> None:
    records = store.records(device_id)
    kinds: dict[str, int] = {}
    for record in records:
        kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
    print(json.dumps({
        "device": store.device(device_id), "records": len(records), "kinds": kinds,
        "sequences": [r["sequence"] for r in records], "gaps": store.gaps(device_id),
        "audit_heads": store.audit_heads(device_id), "session_events": store.session_events(device_id),
        "messages": store.messages(device_id), "tasks": store.tasks(device_id),
        "sessions": store.sessions(device_id), "screens": store.screens(device_id=device_id),
        "update_reports": store.update_reports(device_id),
        "alerts": [r["items"][0] for r in records if r["kind"] == "alert"],
        "shown_at": time.time(),
    }, indent=2))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servicegate-portal", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, into: argparse._SubParsersAction[argparse.ArgumentParser] = sub
                ) -> argparse.ArgumentParser:
        p = into.add_parser(name, help=help)
        p.add_argument("--data-dir", type=Path, required=True, help="the portal's folder (CA, keys, database)")
        return p

    serve = command("serve", "run the portal (HTTPS, client certificates from the vendor CA)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free port (printed)")
    serve.add_argument("--cert-days", type=int, default=90, help="lifetime of the device certificates it issues")
    serve.add_argument("--relay-port", type=int, default=0,
                       help="the screen relay's port (TLS with device certificates); 0: any free port (printed)")
    device = sub.add_parser("device", help="registered devices").add_subparsers(dest="action", required=True)
    command("add", "register a device and print its one-time enrollment password", device).add_argument(
        "--device-id", required=True)
    command("list", "the registered devices", device)
    inbox = sub.add_parser("inbox", help="messages for a device").add_subparsers(dest="action", required=True)
    post = command("post", "queue a message for a device; prints its ID", inbox)
    post.add_argument("--device-id", required=True)
    post.add_argument("--type", required=True, choices=MESSAGE_TYPES)
    post.add_argument("--body", default="{}", help="a JSON object")
    command("show", "what the portal holds for a device (JSON)").add_argument("--device-id", required=True)
    published = command("publish", "publish an update in the TUF repository and offer it to devices")
    published.add_argument("file", type=Path, metavar="FILE", help="the file; its target name is KIND/FILE-NAME")
    published.add_argument("--kind", required=True, help="software, virus-patterns or configuration")
    published.add_argument("--version", required=True, help="one to four numbers with dots, like 1.2.3; new for the "
                                                            "kind and models")
    published.add_argument("--models", action="append", required=True, metavar="M1,M2",
                           help="the scanner models it is for (comma-separated or repeated)")
    published.add_argument("--software-versions", action="append", metavar="V1,V2",
                           help="the ServiceGate versions it applies to (default: any)")
    published.add_argument("--restart", action="store_true", help="installing it restarts the agent or the system")
    published.add_argument("--downtime", action="store_true", help="installing it needs examination downtime")
    published.add_argument("--notes", default="", help="release notes, plain text")
    published.add_argument("--publisher", help="who publishes it (default: Vendor Service)")
    offered = published.add_mutually_exclusive_group()
    offered.add_argument("--offer-to", action="extend", nargs="+", metavar="DEVICE_ID",
                         help="offer it to these devices (default: every registered device)")
    offered.add_argument("--no-offer", action="store_true", help="publish without offering it to any device")
    listed = command("updates", "what is published (with --device: a device's offers and reports)")
    listed.add_argument("--device", "--device-id", dest="device_id", help="a device's offers and update reports")
    listed.add_argument("--json", action="store_true", help="as JSON")
    tuf = sub.add_parser("tuf", help="the TUF repository").add_subparsers(dest="action", required=True)
    command("refresh", "sign a new timestamp (and renew what is close to its expiry)", tuf)
    command("events", "the portal's own log (JSON)")
    engineer = sub.add_parser("engineer", help="the service engineer's tool").add_subparsers(dest="action",
                                                                                            required=True)
    opened = command("open-session", "open a session; prints its 8-digit ID for the technologist", engineer)
    opened.add_argument("--device", "--device-id", dest="device_id", required=True)
    opened.add_argument("--engineer-id", required=True, help="your unique engineer ID")
    opened.add_argument("--name", required=True, help="your full name")
    opened.add_argument("--company", required=True)
    opened.add_argument("--reason", required=True, help="why the session is needed (shown at the console)")
    opened.add_argument("--level", required=True, choices=SESSION_LEVELS)
    opened.add_argument("--kind", default="service", choices=SESSION_KINDS)
    opened.add_argument("--case-id", default="", help="the service case it belongs to (optional)")
    opened.add_argument("--request", action="store_true",
                        help="also ask the device directly, within its standing grant (no ID to type in)")
    command("totp", "print the device's current one-time password", engineer).add_argument(
        "--device", "--device-id", dest="device_id", required=True)
    command("sessions", "a device's sessions (JSON)", engineer).add_argument(
        "--device", "--device-id", dest="device_id", required=True)
    command("cases", "a device's service cases: the technologist's description, urgency, system report (JSON)",
            engineer).add_argument("--device", "--device-id", dest="device_id", required=True)
    auth = command("authenticate", "send your one-time password to the device", engineer)
    auth.add_argument("--session", required=True)
    auth.add_argument("--code", required=True)
    auth.add_argument("--wait", type=float, default=60, help="seconds to wait for the device's answer")
    end = command("end-session", "end a session with a summary (shown at the console, kept in its audit log)",
                  engineer)
    end.add_argument("--session", required=True)
    end.add_argument("--summary", required=True)
    end.add_argument("--wait", type=float, default=60, help="seconds to wait for the device's answer")
    task = command("run-task", "ask the device to run a task of its catalog in the session", engineer)
    task.add_argument("--session", required=True)
    task.add_argument("--kind", required=True, help="a task kind (the device's `servicegate task catalog`)")
    task.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter (repeat)")
    task.add_argument("--wait", type=float, default=0, help="seconds to wait for the task's end and print it")
    stop = command("stop-task", "ask the device to stop a task", engineer)
    stop.add_argument("--session", required=True)
    stop.add_argument("--task", required=True)
    command("tasks", "a session's tasks as the device reported them, with the files released (JSON)",
            engineer).add_argument("--session", required=True)
    fetched = command("task-file", "save a file the technologist released from a task", engineer)
    fetched.add_argument("--session", required=True)
    fetched.add_argument("--task", required=True)
    fetched.add_argument("--name", required=True)
    fetched.add_argument("--out", type=Path, required=True)
    screen = command("screen", "the session's newest screen share: the viewer's address and VNC password (JSON)",
                     engineer)
    screen.add_argument("--session-id", "--session", dest="session", required=True)
    screen.add_argument("--wait", type=float, default=0,
                        help="seconds to wait for a share that is waiting for the viewer or being viewed")
    return parser
