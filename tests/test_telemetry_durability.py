"""Nothing is lost when the shipper dies: real shipper processes SIGKILLed at random moments while the real
HTTPS receiver goes down and comes back. Afterwards the receiver has every record the outbox ever took."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from telemetry.outbox import Outbox
from telemetry.shipper import Shipper
from tests.otlp_receiver import Receiver
from tests.pki import Pki, make_pki

REPO = Path(__file__).resolve().parents[1]
RESOURCE = {"service.name": "servicegate", "servicegate.device.id": "device-0001"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def session(pki: Pki) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(pki.ca_cert)
    s.cert = (str(pki.client_cert), str(pki.client_key))
    return s


def issued(outbox_path: Path) -> int:
    """The highest sequence the outbox ever committed (SQLite's AUTOINCREMENT record of it)."""
    db = sqlite3.connect(outbox_path)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


def lost(outbox_path: Path, receiver: Receiver) -> set[int]:
    """Sequences the outbox committed that the receiver never got and that no shed record names."""
    received = receiver.sequences()
    shed: set[int] = set()
    for arrival in receiver.accepted:
        for record in arrival.document.get("resourceLogs", [{}])[0].get("scopeLogs", [{}])[0].get("logRecords", []):
            attributes = {a["key"]: a["value"] for a in record["attributes"]}
            if attributes.get("servicegate.kind", {}).get("stringValue") == "shed":
                for first, last in json.loads(attributes["servicegate.sequences"]["stringValue"]):
                    shed.update(range(first, last + 1))
    return set(range(1, issued(outbox_path) + 1)) - set(received) - shed


def run_kills(pki: Pki, tmp_path: Path, kills: int, seed: int) -> tuple[Path, Receiver]:
    rng = random.Random(seed)
    outbox_path = tmp_path / "outbox.sqlite"
    receiver = Receiver(pki).start()
    port = int(receiver.url.rsplit(":", 1)[1])
    url, up = receiver.url, True
    started = time.monotonic()
    child = [sys.executable, "-m", "tests.shipper_child", str(outbox_path), url, str(pki.ca_cert),
             str(pki.client_cert), str(pki.client_key)]
    for _ in range(kills):
        if rng.random() < 0.3:  # the service centre goes down, or comes back
            if up:
                receiver.stop()
            else:
                fresh = Receiver(pki).start(port)
                fresh.accepted, fresh.requests = receiver.accepted, receiver.requests  # one receiver's memory
                receiver = fresh
            up = not up
        process = subprocess.Popen(child, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert process.stdout is not None
        ready = process.stdout.readline()  # started (however slow the machine), then killed at a random moment
        assert ready == b"ready\n", ready
        time.sleep(rng.random() * 0.4)
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
    if not up:
        fresh = Receiver(pki).start(port)
        fresh.accepted, fresh.requests = receiver.accepted, receiver.requests
        receiver = fresh
    assert time.monotonic() - started < kills * 5 + 60  # bounded: the test stops by itself
    return outbox_path, receiver


def check_nothing_lost(pki: Pki, tmp_path: Path, kills: int, seed: int) -> None:
    outbox_path, receiver = run_kills(pki, tmp_path, kills, seed)
    try:
        with Outbox(outbox_path) as outbox:
            assert outbox.integrity_check() == "ok"
            result = Shipper(outbox, session(pki), receiver.url, RESOURCE).push()  # the agent's next start
            assert result.error is None
            assert outbox.status().quarantined == 0
        assert issued(outbox_path) > kills  # records were written all along, not only at the end
        assert lost(outbox_path, receiver) == set()
        assert receiver.invalid == []
    finally:
        receiver.stop()


def test_twenty_kills_lose_nothing(pki: Pki, tmp_path: Path) -> None:
    check_nothing_lost(pki, tmp_path, kills=20, seed=20)


@pytest.mark.slow
def test_two_hundred_kills_lose_nothing(pki: Pki, tmp_path: Path) -> None:
    check_nothing_lost(pki, tmp_path, kills=200, seed=200)


def test_the_check_finds_a_lost_record(pki: Pki, tmp_path: Path) -> None:
    """Positive control: a record that disappears from the outbox before it was sent is reported lost."""
    outbox_path = tmp_path / "outbox.sqlite"
    with Outbox(outbox_path) as outbox:
        sequences = outbox.put_many("log", [{"body": f"line {i}"} for i in range(10)])
    db = sqlite3.connect(outbox_path)
    db.execute("DELETE FROM records WHERE sequence = ?", (sequences[4],))
    db.commit()
    db.close()
    with Receiver(pki) as receiver, Outbox(outbox_path) as outbox:
        Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        assert lost(outbox_path, receiver) == {sequences[4]}
