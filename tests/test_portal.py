"""The reference portal as a real process on 127.0.0.1, spoken to with `requests` over real mutual TLS.

The device side here is written out by hand (key, CSR, HTTP calls), so that these tests pin down the protocol
itself; the agent's own enrollment and connection are tested against the same portal in test_connection.py.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portal.app import openapi_document
from portal.pki import BINDING_URI_PREFIX
from portal.store import OTP_MAX_FAILURES, OTP_VALID_S, EnrollmentRefused, Store
from telemetry.otlp import logs_request, metrics_request
from telemetry.outbox import Outbox
from tests.pki import make_pki
from tests.portal_process import PortalProcess

TOTP_SECRET = "A" * 32  # base32 of 160 zero bits: what a device sends along
OPENAPI = Path(__file__).parent.parent / "docs" / "protocol" / "openapi.json"


@dataclass
class Device:
    device_id: str
    cert: Path
    key: Path

    @property
    def pair(self) -> tuple[str, str]:
        return str(self.cert), str(self.key)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalProcess]:
    with PortalProcess(tmp_path_factory.mktemp("portal")) as running:
        yield running


def session(portal: PortalProcess, device: Device | None = None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(portal.ca_file)
    if device is not None:
        s.cert = device.pair
    return s


def csr_for(device_id: str, key: ec.EllipticCurvePrivateKey, binding: str = "ab" * 32) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
    if binding:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(BINDING_URI_PREFIX + binding)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def body(device_id: str, otp: str, csr: str) -> dict[str, str]:
    """An enrollment request, as a device sends it."""
    return {"device_id": device_id, "otp": otp, "csr": csr, "totp_secret": TOTP_SECRET}


def enroll(portal: PortalProcess, device_id: str, tmp: Path, *, otp: str | None = None) -> Device:
    otp = otp or portal.add_device(device_id)
    key = ec.generate_private_key(ec.SECP256R1())
    answer = session(portal).post(f"{portal.url}/v1/enroll", json=body(device_id, otp, csr_for(device_id, key)),
                                  timeout=10)
    assert answer.status_code == 200, answer.text
    device = Device(device_id, tmp / f"{device_id}.pem", tmp / f"{device_id}.key")
    device.cert.write_text(answer.json()["certificate"])
    device.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return device


def otlp_logs(tmp: Path, records: list[tuple[str, dict[str, Any]]], device_claimed: str = "") -> bytes:
    """A real OTLP logs document of outbox records, as the shipper builds it, gzipped."""
    with Outbox(tmp / f"outbox-{time.monotonic_ns()}.sqlite") as outbox:
        for kind, body in records:
            outbox.put(kind, body)
        batch = outbox.batch()
    return gzip.compress(json.dumps(logs_request(batch, {"servicegate.device.id": device_claimed})).encode())


def post_logs(portal: PortalProcess, device: Device, body: bytes) -> requests.Response:
    return session(portal, device).post(f"{portal.url}/v1/logs", data=body, timeout=10,
                                        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})


def test_the_openapi_document_in_docs_is_what_the_portal_serves(portal: PortalProcess) -> None:
    served = session(portal).get(f"{portal.url}/openapi.json", timeout=10).json()
    assert served == openapi_document()
    assert json.loads(OPENAPI.read_text()) == served, \
        "docs/protocol/openapi.json is out of date: run `python -m portal.app > docs/protocol/openapi.json`"


def test_a_device_enrolls_with_its_one_time_password_and_is_known_by_its_certificate(
        portal: PortalProcess, tmp_path: Path) -> None:
    ca = session(portal).get(f"{portal.url}/v1/ca", timeout=10).json()
    fingerprint = x509.load_pem_x509_certificate(ca["ca"].encode()).fingerprint(hashes.SHA256()).hex()
    assert fingerprint == portal.ca_fingerprint == ca["sha256"]
    device = enroll(portal, "ct-0001", tmp_path)
    certificate = x509.load_pem_x509_certificate(device.cert.read_bytes())
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ct-0001"
    alt = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.UniformResourceIdentifier) == [BINDING_URI_PREFIX + "ab" * 32]
    assert session(portal, device).get(f"{portal.url}/v1/device", timeout=10).json()["device_id"] == "ct-0001"
    assert [e["event"] for e in Store(portal.data_dir / "portal.sqlite").events("ct-0001")] == \
        ["otp_issued", "otp_accepted", "certificate_issued"]


def test_a_one_time_password_works_once(portal: PortalProcess, tmp_path: Path) -> None:
    otp = portal.add_device("ct-0002")
    enroll(portal, "ct-0002", tmp_path, otp=otp)
    key = ec.generate_private_key(ec.SECP256R1())
    again = session(portal).post(f"{portal.url}/v1/enroll", timeout=10,
                                 json=body("ct-0002", otp, csr_for("ct-0002", key)))
    assert again.status_code == 401
    assert "already used" in again.json()["detail"]


def test_five_wrong_passwords_lock_the_enrollment_even_for_the_right_one(portal: PortalProcess) -> None:
    otp = portal.add_device("ct-0003")
    key = ec.generate_private_key(ec.SECP256R1())
    tries = [session(portal).post(f"{portal.url}/v1/enroll", timeout=10,
                                  json=body("ct-0003", f"WRONG-{i}", csr_for("ct-0003", key)))
             for i in range(OTP_MAX_FAILURES)]
    assert [t.status_code for t in tries] == [401] * OTP_MAX_FAILURES
    assert "now locked" in tries[-1].json()["detail"]
    right = session(portal).post(f"{portal.url}/v1/enroll", timeout=10,
                                 json=body("ct-0003", otp, csr_for("ct-0003", key)))
    assert right.status_code == 401
    assert "locked" in right.json()["detail"]
    refused = [e for e in Store(portal.data_dir / "portal.sqlite").events("ct-0003")
               if e["event"] == "enrollment_refused"]
    assert len(refused) == OTP_MAX_FAILURES + 1


def test_an_expired_password_is_refused(portal: PortalProcess) -> None:
    # Issued (through the same store the command line uses) as if 16 minutes ago: no waiting.
    store = Store(portal.data_dir / "portal.sqlite", clock=lambda: time.time() - OTP_VALID_S - 60)
    otp = store.add_device("ct-0004")
    key = ec.generate_private_key(ec.SECP256R1())
    answer = session(portal).post(f"{portal.url}/v1/enroll", timeout=10,
                                  json=body("ct-0004", otp, csr_for("ct-0004", key)))
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]


@pytest.mark.parametrize(("name", "binding", "why"), [
    ("ct-other", "ab" * 32, "common name"),
    ("ct-0005", "", "hardware binding"),
])
def test_a_request_that_does_not_name_the_device_and_its_machine_is_refused(
        portal: PortalProcess, tmp_path: Path, name: str, binding: str, why: str) -> None:
    otp = portal.add_device("ct-0005")
    key = ec.generate_private_key(ec.SECP256R1())
    answer = session(portal).post(f"{portal.url}/v1/enroll", timeout=10,
                                  json=body("ct-0005", otp, csr_for(name, key, binding)))
    assert answer.status_code == 400
    assert why in answer.json()["detail"]
    # The password was not used up by the faulty request.
    enroll(portal, "ct-0005", tmp_path, otp=otp)


def test_without_a_client_certificate_only_enrollment_is_open(portal: PortalProcess) -> None:
    anonymous = session(portal)
    for method, path in (("get", "/v1/device"), ("get", "/v1/inbox"), ("post", "/v1/logs"),
                         ("get", "/v1/audit/heads"), ("post", "/v1/inbox/ack")):
        answer = anonymous.request(method, f"{portal.url}{path}", timeout=10)
        assert answer.status_code == 401, path
        assert "client certificate" in answer.json()["detail"]


def test_a_certificate_from_another_ca_does_not_get_through_the_handshake(portal: PortalProcess,
                                                                          tmp_path: Path) -> None:
    stranger = make_pki(tmp_path / "stranger", device_id="ct-0001")
    # With TLS 1.3 the client learns of the refusal only when the server closes the connection after the
    # handshake: requests says ConnectionError (of which SSLError is a kind).
    with pytest.raises(requests.exceptions.ConnectionError):
        session(portal).get(f"{portal.url}/v1/device", cert=(str(stranger.client_cert), str(stranger.client_key)),
                            timeout=10)


def test_a_device_enrolled_again_cannot_use_its_old_certificate(portal: PortalProcess, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    old = enroll(portal, "ct-0006", tmp_path / "old")
    new = enroll(portal, "ct-0006", tmp_path)
    assert session(portal, new).get(f"{portal.url}/v1/device", timeout=10).status_code == 200
    assert session(portal, old).get(f"{portal.url}/v1/device", timeout=10).status_code == 403


def test_device_a_cannot_act_as_device_b(portal: PortalProcess, tmp_path: Path) -> None:
    a, b = enroll(portal, "ct-00a", tmp_path), enroll(portal, "ct-00b", tmp_path)
    message = portal.post("ct-00b", "task_request", {"task": "collect_logs"})
    # A sees nothing of B's inbox and cannot acknowledge B's message.
    assert session(portal, a).get(f"{portal.url}/v1/inbox", timeout=10).json()["messages"] == []
    ack = session(portal, a).post(f"{portal.url}/v1/inbox/ack", json={"ids": [message]}, timeout=10)
    assert ack.json()["acknowledged"] == 0
    assert [m["id"] for m in session(portal, b).get(f"{portal.url}/v1/inbox", timeout=10).json()["messages"]] == \
        [message]
    # Telemetry A sends naming B, in the resource and in a header, is A's.
    body = otlp_logs(tmp_path, [("log", {"body": "from a"})], device_claimed="ct-00b")
    answer = session(portal, a).post(f"{portal.url}/v1/logs", data=body, timeout=10, headers={
        "Content-Encoding": "gzip", "Content-Type": "application/json", "X-Device-Id": "ct-00b"})
    assert answer.status_code == 200
    assert portal.show("ct-00a")["records"] == 1
    assert portal.show("ct-00b")["records"] == 0
    # A's task events are A's.
    body = otlp_logs(tmp_path, [("log", {"body": "from a"}),  # sequence 1 arrived above; the event is 2
                                ("task_event", {"id": "t-1", "session_id": "12345678", "state": "completed"})],
                     device_claimed="ct-00b")
    session(portal, a).post(f"{portal.url}/v1/logs", data=body, timeout=10, headers={
        "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert portal.show("ct-00b")["tasks"] == []
    assert [t["id"] for t in portal.show("ct-00a")["tasks"]] == ["t-1"]


def test_telemetry_is_kept_once_per_sequence_with_gaps_heads_and_session_events(portal: PortalProcess,
                                                                                tmp_path: Path) -> None:
    device = enroll(portal, "ct-0007", tmp_path)
    body = otlp_logs(tmp_path, [
        ("log", {"body": "gantry warm"}),
        ("shed", {"sequences": [[10, 19], [25, 25]], "count": 11, "kinds": {"log": 11}, "reason": "over cap"}),
        ("audit_checkpoint", {"head_seq": 41, "head_hash": "c" * 64, "key_id": "k1", "signature": "s"}),
        ("session_event", {"session_id": "12345678", "state": "active"}),
    ])
    assert post_logs(portal, device, body).json() == {"partialSuccess": {}}
    assert post_logs(portal, device, body).status_code == 200  # delivered twice: kept once
    shown = portal.show("ct-0007")
    assert shown["sequences"] == [1, 2, 3, 4]
    assert [(g["first"], g["last"], g["reported_by"]) for g in shown["gaps"]] == [(10, 19, 2), (25, 25, 2)]
    assert [h["servicegate.head_seq"] for h in shown["audit_heads"]] == [41]
    assert [e["servicegate.state"] for e in shown["session_events"]] == ["active"]
    heads = session(portal, device).get(f"{portal.url}/v1/audit/heads", timeout=10).json()["heads"]
    assert heads == shown["audit_heads"]


def test_metrics_arrive_once_per_sequence(portal: PortalProcess, tmp_path: Path) -> None:
    device = enroll(portal, "ct-0008", tmp_path)
    with Outbox(tmp_path / "m.sqlite") as outbox:
        outbox.put("metric", {"time_unix_nano": 1, "points": [
            {"name": "system.cpu.utilization", "unit": "1", "kind": "gauge", "value": 0.5},
            {"name": "system.memory.utilization", "unit": "1", "kind": "gauge", "value": 0.25}]})
        document = metrics_request(outbox.batch(), {})
    for _ in range(2):
        answer = session(portal, device).post(f"{portal.url}/v1/metrics", json=document, timeout=10)
        assert answer.status_code == 200
    records = Store(portal.data_dir / "portal.sqlite").records("ct-0008")
    assert [(r["sequence"], [i["name"] for i in r["items"]]) for r in records] == \
        [(1, ["system.cpu.utilization", "system.memory.utilization"])]


@pytest.mark.parametrize(("body", "encoding", "status", "words"), [
    (b"{not json", None, 400, "not a valid OTLP/JSON document"),
    (gzip.compress(b"[1, 2]"), "gzip", 400, "not a valid OTLP/JSON document"),
    (b"\x1f\x8b garbage", "gzip", 400, "not a valid OTLP/JSON document"),
    (json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}}]}]}]}).encode(),
     None, 400, "servicegate.sequence"),
    (gzip.compress(b" " * (70 * 1024 * 1024)), "gzip", 413, "unpacked"),
    (b"x" * (17 * 1024 * 1024), None, 413, "larger than"),
])
def test_bad_telemetry_is_refused_in_words_and_the_portal_goes_on(portal: PortalProcess, tmp_path: Path,
                                                                  body: bytes, encoding: str | None, status: int,
                                                                  words: str) -> None:
    device = enroll(portal, f"ct-bad-{status}-{len(body)}", tmp_path)
    headers = {"Content-Type": "application/json", **({"Content-Encoding": encoding} if encoding else {})}
    answer = session(portal, device).post(f"{portal.url}/v1/logs", data=body, headers=headers, timeout=30)
    assert answer.status_code == status
    assert words in answer.json()["detail"]
    assert post_logs(portal, device, otlp_logs(tmp_path, [("log", {"body": "fine"})])).status_code == 200


def test_malformed_requests_get_a_sentence(portal: PortalProcess, tmp_path: Path) -> None:
    device = enroll(portal, "ct-0009", tmp_path)
    answer = session(portal, device).post(f"{portal.url}/v1/inbox/ack", data=b"{]", timeout=10,
                                          headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert "not valid" in answer.json()["detail"]
    answer = session(portal).post(f"{portal.url}/v1/enroll", json={"device_id": "x"}, timeout=10)
    assert answer.status_code == 400
    assert "otp" in answer.json()["detail"]


def test_the_inbox_long_poll_returns_when_a_message_arrives_and_acknowledged_ones_stay_away(
        portal: PortalProcess, tmp_path: Path) -> None:
    device = enroll(portal, "ct-0010", tmp_path)
    posted: list[str] = []
    poster = threading.Timer(0.5, lambda: posted.append(portal.post("ct-0010", "session_request", {"n": 1})))
    poster.start()
    answer = session(portal, device).get(f"{portal.url}/v1/inbox", params={"wait": 30}, timeout=40).json()
    poster.join()
    assert [(m["id"], m["type"], m["body"]) for m in answer["messages"]] == [(posted[0], "session_request", {"n": 1})]
    # Not acknowledged: it comes again. Acknowledged (twice: harmless): it does not.
    assert session(portal, device).get(f"{portal.url}/v1/inbox", timeout=10).json() == answer
    acks = [session(portal, device).post(f"{portal.url}/v1/inbox/ack", json={"ids": posted}, timeout=10).json()
            for _ in range(2)]
    assert acks == [{"acknowledged": 1}, {"acknowledged": 0}]
    assert session(portal, device).get(f"{portal.url}/v1/inbox", params={"wait": 0.3},
                                       timeout=10).json()["messages"] == []


def test_the_portal_keeps_everything_across_a_restart(tmp_path: Path) -> None:
    with PortalProcess(tmp_path / "portal") as portal:
        fingerprint = portal.ca_fingerprint
        device = enroll(portal, "ct-0011", tmp_path)
        assert post_logs(portal, device, otlp_logs(tmp_path, [("log", {"body": "one"})])).status_code == 200
        message = portal.post("ct-0011", "update_offer", {"version": "1.2.3"})
        portal.restart()
        assert portal.ca_fingerprint == fingerprint
        assert session(portal, device).get(f"{portal.url}/v1/device", timeout=10).status_code == 200
        assert [m["id"] for m in session(portal, device).get(f"{portal.url}/v1/inbox", timeout=10
                                                              ).json()["messages"]] == [message]
        assert portal.show("ct-0011")["sequences"] == [1]


def test_two_redemptions_of_one_password_at_the_same_time_let_one_through(tmp_path: Path) -> None:
    store = Store(tmp_path / "portal.sqlite")
    otp = store.add_device("ct-0012")
    outcomes: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def redeem() -> None:
        start.wait()
        try:
            Store(tmp_path / "portal.sqlite").redeem_otp("ct-0012", otp)
            accepted = True
        except EnrollmentRefused:
            accepted = False
        with lock:
            outcomes.append(accepted)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 7 + [True]
