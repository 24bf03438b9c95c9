"""A real OTLP/HTTP receiver for the tests: HTTPS on 127.0.0.1, client certificate required (the test's CA).

Every request is checked the way a strict receiver would: gzip-compressed, and a valid OTLP JSON document
for its path, parsed by the `opentelemetry-proto` package's protobuf messages. What arrives is recorded by
`servicegate.sequence`, so a test can tell duplicates, gaps and losses. A script of answers (status codes,
headers, a hang, garbage) makes it misbehave on purpose; after the script, it answers 200.
"""

from __future__ import annotations

import gzip
import json
import ssl
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from tests.pki import Pki

MESSAGES: dict[str, Any] = {"/v1/metrics": ExportMetricsServiceRequest, "/v1/logs": ExportLogsServiceRequest}


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    hang_s: float = 0.0  # wait this long before answering (a hanging receiver)


@dataclass
class Arrival:
    path: str
    document: dict[str, Any]
    records: dict[int, str]  # servicegate.sequence -> servicegate.kind, in document order (a record's points share one)

    @property
    def kinds(self) -> list[str]:
        return list(self.records.values())


class Receiver:
    """Use as a context manager; `url` is its base URL."""

    def __init__(self, pki: Pki, script: list[Answer] | None = None) -> None:
        self.pki = pki
        self.script: deque[Answer] = deque(script or [])
        self.accepted: list[Arrival] = []  # requests answered 2xx
        self.requests = 0
        self.invalid: list[str] = []  # why a request was not a valid OTLP document
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def kinds(self) -> set[str]:
        """The kinds of record accepted so far."""
        with self._lock:
            return {kind for arrival in self.accepted for kind in arrival.kinds}

    def log_texts(self) -> list[str]:
        """The text of every log record accepted so far."""
        with self._lock:
            return [record["body"].get("stringValue", "") for arrival in self.accepted
                    for resource in arrival.document.get("resourceLogs", []) for scope in resource["scopeLogs"]
                    for record in scope["logRecords"]]

    def sequences(self) -> Counter[int]:
        """How often each sequence arrived in an accepted request."""
        with self._lock:
            return Counter(s for arrival in self.accepted for s in arrival.records)

    def start(self, port: int = 0) -> Receiver:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        context.load_verify_locations(self.pki.ca_cert)
        context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests += 1
                    answer = receiver.script.popleft() if receiver.script else Answer()
                if answer.hang_s:
                    receiver._stopping.wait(answer.hang_s)
                arrival = None
                if 200 <= answer.status < 300:
                    arrival, problem = receiver._parse(self.path, self.headers.get("Content-Encoding"), raw)
                    if problem is not None:
                        with receiver._lock:
                            receiver.invalid.append(problem)
                        answer = Answer(400, body=json.dumps({"error": problem}).encode())
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    return  # the client gave up (a timeout): its records were not accepted
                if arrival is not None:
                    with receiver._lock:
                        receiver.accepted.append(arrival)

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _parse(path: str, encoding: str | None, raw: bytes) -> tuple[Arrival | None, str | None]:
        if path not in MESSAGES:
            return None, f"unknown path {path}"
        if encoding != "gzip":
            return None, f"Content-Encoding {encoding!r}, not gzip"
        try:
            text = gzip.decompress(raw).decode()
            json_format.Parse(text, MESSAGES[path](), ignore_unknown_fields=False)
            document = json.loads(text)
        except (OSError, UnicodeDecodeError, json_format.ParseError, ValueError) as exc:
            return None, f"not a valid OTLP document for {path}: {exc}"
        records: dict[int, str] = {}
        for attributes in _attribute_lists(document):
            values = {a["key"]: a["value"] for a in attributes}
            if "servicegate.sequence" in values:
                records[int(values["servicegate.sequence"]["intValue"])] = values["servicegate.kind"]["stringValue"]
        return Arrival(path, document, records), None


def _attribute_lists(document: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The attribute lists of every data point and log record in an OTLP document."""
    found = []
    for resource in document.get("resourceMetrics", []):
        for scope in resource["scopeMetrics"]:
            for metric in scope["metrics"]:
                for kind in ("gauge", "sum"):
                    found += [p.get("attributes", []) for p in metric.get(kind, {}).get("dataPoints", [])]
    for resource in document.get("resourceLogs", []):
        for scope in resource["scopeLogs"]:
            found += [r.get("attributes", []) for r in scope["logRecords"]]
    return found

