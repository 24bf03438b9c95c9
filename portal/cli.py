"""`servicegate-portal`: the reference vendor portal (docs/protocol.md), for tests, the demo and site acceptance
tests. Not part of the device install.

    servicegate-portal serve --data-dir DIR [--host 127.0.0.1] [--port 8443]
    servicegate-portal device add --data-dir DIR --device-id ID
    servicegate-portal device list --data-dir DIR
    servicegate-portal inbox post --data-dir DIR --device-id ID --type task_request --body '{"task": "..."}'
    servicegate-portal show --data-dir DIR --device-id ID      (what the portal holds for a device, JSON)
    servicegate-portal events --data-dir DIR                   (the portal's own log: enrollments, refusals)

The data folder holds the vendor CA, the server certificate and `portal.sqlite`; the commands other than
`serve` work on it directly, with or without a running server.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import ssl
import sys
import time
from pathlib import Path

from portal.store import MESSAGE_TYPES, OTP_VALID_S, Store

DEFAULT_PORT = 8443


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data_dir: Path = args.data_dir
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if args.command == "serve":
            return _serve(data_dir, args.host, args.port, args.cert_days)
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
        else:
            print(json.dumps(store.events(), indent=2))
    except OSError as exc:
        print(f"servicegate-portal: {exc.strerror or exc}: {exc.filename or data_dir}", file=sys.stderr)
        return 1
    return 0


def _serve(data_dir: Path, host: str, port: int, cert_days: int) -> int:
    # The server's modules are loaded only here: the other commands need nothing but SQLite.
    import uvicorn

    from portal.app import create_app
    from portal.pki import PortalPki
    from portal.tlsproto import TLSH11Protocol

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pki = PortalPki(data_dir, server_names=tuple(dict.fromkeys((host, "127.0.0.1", "localhost"))))
    app = create_app(Store(data_dir / "portal.sqlite"), pki, cert_days=cert_days)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        print(f"servicegate-portal: cannot listen on {host}:{port} ({exc.strerror}); choose another --port",
              file=sys.stderr)
        return 1
    url = f"https://{host}:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, http=TLSH11Protocol, log_level="warning", access_log=False,
                            ssl_certfile=str(pki.server_cert), ssl_keyfile=str(pki.server_key),
                            ssl_ca_certs=str(pki.ca_file), ssl_cert_reqs=ssl.CERT_OPTIONAL,
                            timeout_graceful_shutdown=2)
    print(f"ServiceGate reference portal at {url}", flush=True)
    print(f"vendor CA SHA-256 fingerprint: {pki.fingerprint}", flush=True)
    print(f"data: {data_dir}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _show(store: Store, device_id: str) -> None:
    records = store.records(device_id)
    kinds: dict[str, int] = {}
    for record in records:
        kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
    print(json.dumps({
        "device": store.device(device_id), "records": len(records), "kinds": kinds,
        "sequences": [r["sequence"] for r in records], "gaps": store.gaps(device_id),
        "audit_heads": store.audit_heads(device_id), "session_events": store.session_events(device_id),
        "messages": store.messages(device_id), "task_results": store.task_results(device_id),
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
    command("events", "the portal's own log (JSON)")
    return parser
