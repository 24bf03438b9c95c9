"""A shipper process for the durability test: writes records into the outbox and pushes them, forever,
until the test kills it with SIGKILL. `python -m tests.shipper_child OUTBOX URL CA CERT KEY`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import requests

from telemetry.outbox import Outbox
from telemetry.shipper import Shipper

RESOURCE = {"service.name": "servicegate", "servicegate.device.id": "device-0001"}


def main(outbox_path: str, url: str, ca: str, cert: str, key: str) -> None:
    session = requests.Session()
    session.trust_env = False
    session.verify = ca
    session.cert = (cert, key)
    outbox = Outbox(Path(outbox_path))
    # Short real waits between attempts: the receiver is up and down while this runs, and the test kills
    # this process at random moments; the waits only keep it from spinning.
    shipper = Shipper(outbox, session, url, RESOURCE, batch_records=7, timeout_s=(0.5, 1.0),
                      wait=lambda seconds: time.sleep(min(seconds, 0.05)))
    print("ready", flush=True)  # the test kills at a random moment after this
    n = 0
    while True:
        outbox.put_many("log", [{"body": f"line {n + i}", "severity": "INFO"} for i in range(5)])
        outbox.put("metric", {"points": [{"name": "system.cpu.utilization", "kind": "gauge", "value": 0.5}]})
        n += 5
        shipper.push()


if __name__ == "__main__":
    main(*sys.argv[1:6])
