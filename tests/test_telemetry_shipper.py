"""telemetry.shipper against a real HTTPS receiver on 127.0.0.1 (CA made in the test, client certificate required).

Waits between retries are injected (recorded, not slept); the receiver is real, its answers scripted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from telemetry.outbox import Outbox
from telemetry.shipper import BACKOFF_CAP_S, Shipper
from tests.otlp_receiver import Answer, Receiver
from tests.pki import Pki, make_pki

RESOURCE = {"service.name": "servicegate", "servicegate.device.id": "device-0001"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def session(pki: Pki, *, client_cert: bool = True) -> requests.Session:
    """What the agent will build: the vendor CA as the only trust anchor, the device's certificate, no proxies."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(pki.ca_cert)
    if client_cert:
        s.cert = (str(pki.client_cert), str(pki.client_key))
    return s


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite") as box:
        yield box


class Waits:
    """Stands in for the shipper's wait between attempts: records each, sleeps none."""

    def __init__(self, then: object = None) -> None:
        self.seconds: list[float] = []
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        if callable(self.then):
            self.then(len(self.seconds))


def fill(outbox: Outbox) -> list[int]:
    sequences = outbox.put_many("metric", [
        {"time_unix_nano": 1_800_000_000_000_000_000 + i, "points": [
            {"name": "system.cpu.utilization", "unit": "1", "kind": "gauge", "value": 0.25},
            {"name": "servicegate.agent.restarts", "unit": "{restart}", "kind": "counter", "value": 3}]}
        for i in range(5)])
    sequences += outbox.put_many("log", [{"body": f"scan finished, line {i}", "severity": "INFO",
                                          "attributes": {"log.file.name": "modality.log"}} for i in range(7)])
    sequences.append(outbox.put("alert", {"state": "firing", "rule": "disk-full", "metric": "disk.used_percent",
                                          "value": 97.5, "comparison": ">", "limit": 95, "severity": "critical"}))
    return sequences


def test_everything_arrives_once_gzip_valid_otlp_alerts_first(pki: Pki, outbox: Outbox) -> None:
    sequences = fill(outbox)
    with Receiver(pki) as receiver:
        result = Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        assert (result.sent, result.quarantined, result.error) == (len(sequences), 0, None)
        assert receiver.invalid == []
        assert receiver.sequences() == {s: 1 for s in sequences}
        first = receiver.accepted[0]
        assert (first.path, first.kinds[0]) == ("/v1/logs", "alert")  # the alert went before the backlog
        assert {a.path for a in receiver.accepted} == {"/v1/logs", "/v1/metrics"}
        metrics = next(a for a in receiver.accepted if a.path == "/v1/metrics").document
        resource = metrics["resourceMetrics"][0]["resource"]["attributes"]
        assert {"key": "servicegate.device.id", "value": {"stringValue": "device-0001"}} in resource
    status = outbox.status()
    assert (status.records, status.last_error) == (0, None)
    assert status.last_push is not None


def test_without_a_client_certificate_nothing_is_accepted_and_nothing_lost(pki: Pki, outbox: Outbox) -> None:
    sequences = fill(outbox)
    stop = threading.Event()
    waits = Waits(then=lambda n: stop.set())
    with Receiver(pki) as receiver:
        result = Shipper(outbox, session(pki, client_cert=False), receiver.url, RESOURCE, stop=stop,
                         wait=waits).push()
        assert receiver.accepted == []
    assert result.error == "stopped"
    assert outbox.status().records == len(sequences)
    assert "cannot reach" in (outbox.status().last_error or "")


def test_retry_after_and_backoff_with_full_jitter(pki: Pki, outbox: Outbox) -> None:
    sequences = fill(outbox)
    script = [Answer(503, {"Retry-After": "7"}), Answer(502), Answer(504), Answer(429)]
    waits = Waits()
    with Receiver(pki, script) as receiver:
        shipper = Shipper(outbox, session(pki), receiver.url, RESOURCE, wait=waits, rng=lambda: 1.0)
        result = shipper.push()
        assert receiver.sequences() == {s: 1 for s in sequences}
    assert waits.seconds == [7.0, 4.0, 8.0, 16.0]  # Retry-After, then 2**failures seconds at the top of the jitter
    assert result.sent == len(sequences)
    assert shipper.backoff_s(40) == BACKOFF_CAP_S  # capped at 10 minutes
    assert Shipper(outbox, session(pki), "https://x", RESOURCE, rng=lambda: 0.25).backoff_s(3) == 2.0


def test_a_400_quarantines_the_batch_reports_it_and_the_rest_goes_on(pki: Pki, outbox: Outbox) -> None:
    bad = outbox.put_many("metric", [{"points": [{"name": "x", "value": 1}]}])
    with Receiver(pki, [Answer(400, body=b'{"message": "bad document"}')]) as receiver:
        result = Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        more = fill(outbox)
        Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        arrived = receiver.sequences()
        reports = [a for a in receiver.accepted if "quarantined" in a.kinds]
    assert result.quarantined == 1
    assert bad[0] not in arrived
    assert set(more) <= set(arrived)
    assert len(reports) == 1  # the receiver is told which sequences were held back, and why
    report = next(r for r in reports[0].document["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                  if {"key": "servicegate.kind", "value": {"stringValue": "quarantined"}} in r["attributes"])
    assert "HTTP 400" in report["body"]["stringValue"]
    status = outbox.status()
    assert (status.quarantined, status.records) == (1, 1)  # kept on the device, not dropped


def test_a_500_is_not_retried_now_and_nothing_is_lost_or_quarantined(pki: Pki, outbox: Outbox) -> None:
    sequences = fill(outbox)
    with Receiver(pki, [Answer(500, body=b"<html>Internal Server Error</html>")]) as receiver:
        first = Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        assert receiver.requests == 1  # no retry within this push
        assert first.error is not None
        assert "HTTP 500" in first.error
        assert (outbox.status().records, outbox.status().quarantined) == (len(sequences), 0)
        second = Shipper(outbox, session(pki), receiver.url, RESOURCE).push()  # the next scheduled push
        assert receiver.sequences() == {s: 1 for s in sequences}
    assert second.error is None


def test_a_receiver_that_refuses_everything_does_not_loop(pki: Pki, outbox: Outbox) -> None:
    """400 to every request: each push quarantines one batch and stops; a refused report is not reported again."""
    sequences = fill(outbox)
    script = [Answer(400, body=b"no")] * 20
    with Receiver(pki, script) as receiver:
        for _ in range(10):
            Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        assert receiver.requests <= 5  # once everything is quarantined there is nothing left to send
    status = outbox.status()
    assert status.quarantined == status.records  # all kept, none sent again
    assert status.records <= len(sequences) + 2  # at most one report per refused batch of data, none about reports


def test_an_authentication_error_stops_the_push_and_keeps_everything(pki: Pki, outbox: Outbox) -> None:
    sequences = fill(outbox)
    with Receiver(pki, [Answer(403, body=b"device certificate revoked")]) as receiver:
        result = Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        assert receiver.requests == 1
    assert result.error is not None
    assert "HTTP 403" in result.error
    assert "device certificate revoked" in result.error
    status = outbox.status()
    assert (status.records, status.quarantined) == (len(sequences), 0)


def test_too_large_halves_the_batch_and_quarantines_a_single_record_still_too_large(pki: Pki,
                                                                                     outbox: Outbox) -> None:
    sequences = fill(outbox)
    with Receiver(pki, [Answer(413)]) as receiver:
        result = Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        assert receiver.sequences() == {s: 1 for s in sequences}
        assert len(receiver.accepted) > 2  # the refused request's 8 records went again, in smaller batches
    assert (result.sent, result.quarantined) == (len(sequences), 0)

    huge = outbox.put("log", {"body": "x" * 10_000})
    with Receiver(pki, [Answer(413)]) as receiver:
        result = Shipper(outbox, session(pki), receiver.url, RESOURCE).push()
        assert huge not in receiver.sequences()
    assert result.quarantined == 1
    assert outbox.status().quarantined == 1


def test_garbage_answers_and_a_hanging_receiver(pki: Pki, outbox: Outbox) -> None:
    sequences = fill(outbox)
    script = [Answer(200, body=b"\x00\xffnot json at all"), Answer(hang_s=3.0)]
    waits = Waits()
    with Receiver(pki, script) as receiver:
        result = Shipper(outbox, session(pki), receiver.url, RESOURCE, wait=waits, timeout_s=(2.0, 0.5)).push()
        counts = receiver.sequences()
    assert set(counts) == set(sequences)  # the garbage "200" was a success; the hang was retried
    assert result.sent >= len(sequences)
    assert len(waits.seconds) == 1


def test_a_receiver_that_comes_back_gets_everything(pki: Pki, outbox: Outbox, tmp_path: Path) -> None:
    sequences = fill(outbox)
    receiver = Receiver(pki).start()
    url = receiver.url
    port = int(url.rsplit(":", 1)[1])
    receiver.stop()  # the service centre is down
    again = Receiver(pki)

    def back(attempts: int) -> None:
        if attempts == 3:
            again.start(port)

    try:
        result = Shipper(outbox, session(pki), url, RESOURCE, wait=Waits(then=back)).push()
        assert again.sequences() == {s: 1 for s in sequences}
    finally:
        again.stop()
    assert result.sent == len(sequences)
    assert outbox.status().records == 0


def test_a_stop_ends_a_push_at_once_even_while_the_receiver_hangs(pki: Pki, outbox: Outbox) -> None:
    sequences = fill(outbox)
    stop = threading.Event()
    with Receiver(pki, [Answer(hang_s=20.0)]) as receiver:
        shipper = Shipper(outbox, session(pki), receiver.url, RESOURCE, stop=stop, timeout_s=(5.0, 30.0))
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        result = shipper.push()
        took = time.monotonic() - started
    assert took < 2.0
    assert result.error == "stopped"
    assert outbox.status().records == len(sequences)  # nothing acknowledged, nothing lost
