"""Outbox drain after an outage: records/s from a full outbox to a loopback OTLP receiver over mutual TLS.

The outbox is filled with `RECORDS` log records (as 72 hours of an outage would leave them), then one
`Shipper.push()` sends them all: gzip, OTLP JSON, acknowledgement in the outbox per batch. The receiver is the
tests' (`tests.otlp_receiver`: it parses every document with the opentelemetry-proto messages), run in its own
process so that it does not share this one's interpreter lock.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from telemetry.outbox import Outbox
from telemetry.shipper import Shipper
from tests.pki import Pki, make_pki

RECORDS = 20_000
REPO = Path(__file__).resolve().parents[1]
SINK = """
import sys
from pathlib import Path
from tests.otlp_receiver import Receiver
from tests.pki import Pki
root = Path(sys.argv[1])
pki = Pki(root / "ca.pem", root / "server.pem", root / "server.key", root / "client.pem", root / "client.key")
receiver = Receiver(pki).start()
print(receiver.url, flush=True)
sys.stdin.read()  # until the benchmark closes it
print(sum(len(a.records) for a in receiver.accepted), len(receiver.invalid), flush=True)
receiver.stop()
"""


def start_sink(root: Path, device_id: str = "device-0001") -> tuple[subprocess.Popen[str], str, Pki]:
    """The receiver in a process of its own, with certificates made in `root`: (process, its URL, the
    certificates). Closing the process's stdin stops it, after it printed how many records it accepted and how
    many documents were invalid."""
    pki = make_pki(root, device_id=device_id)
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(root)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    return sink, sink.stdout.readline().strip(), pki


def drain() -> tuple[str, str, str, str]:
    with tempfile.TemporaryDirectory(prefix="sg-drain-") as tmp:
        root = Path(tmp)
        sink, url, pki = start_sink(root)
        assert sink.stdin is not None
        assert sink.stdout is not None
        with Outbox(root / "outbox.sqlite") as outbox:
            outbox.put_many("log", [{"body": f"2026-11-27 10:14:{i % 60:02d} INFO Reconstruction job {i} finished: "
                                             "512 images, kernel B30f, 4.1 s", "severity": "INFO",
                                     "attributes": {"log.file.name": "modality.log"}} for i in range(RECORDS)])
            session = requests.Session()
            session.trust_env = False
            session.verify = str(pki.ca_cert)
            session.cert = (str(pki.client_cert), str(pki.client_key))
            start = time.perf_counter()
            result = Shipper(outbox, session, url, {"service.name": "servicegate"}).push()
            elapsed = time.perf_counter() - start
        sink.stdin.close()
        received, invalid = (int(x) for x in sink.stdout.readline().split())
        sink.wait(timeout=30)
    if not (result.sent == RECORDS == received and invalid == 0):
        raise RuntimeError(f"the drain lost or spoiled records: {result}, received {received}, invalid {invalid}")
    rate = RECORDS / elapsed
    return (f"outbox drain to a loopback OTLP receiver ({RECORDS:,} log records, mTLS, gzip)",
            f"{rate:,.0f} records/s", "target >= 5,000 records/s", "met" if rate >= 5000 else "not met")
