"""The agent's link to the portal (agent.uplink) against real TLS servers on loopback: the reference portal, a
real proxy (tinyproxy), and a small scripted HTTPS server that plays a wrong, broken or hanging portal.

Each refusal in the TLS matrix has its positive control in the same fixture: the same link, the same server,
one thing changed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.config import Config, from_mapping
from agent.connection import pinned_session
from agent.enroll import Enrollment, enroll
from agent.errors import PortalError
from agent.identity import binding_of
from agent.uplink import InboxMessage, LinkError, LinkState, Uplink, connect
from tests.pki import Ca, make_ca
from tests.portal_process import PortalProcess
from tests.proxy import Proxy, needs_tinyproxy
from tests.tls_server import serve_tls


def device_config(tmp_path: Path, machine_id: str = "a" * 32, **portal: Any) -> Config:
    machine = tmp_path / "machine"
    machine.mkdir(parents=True, exist_ok=True)
    (machine / "machine-id").write_text(machine_id)
    return from_mapping({"paths": {"state_dir": str(tmp_path / "state")},
                         "portal": {"machine_id_file": str(machine / "machine-id"),
                                    "product_uuid_file": str(machine / "none"),
                                    "product_serial_file": str(machine / "none"), "request_timeout_s": 5, **portal}})


# --- a scripted HTTPS server -----------------------------------------------------------------------------------

@dataclass
class Script:
    status: int = 200
    body: bytes = b'{"messages": []}'
    hang_s: float = 0.0  # after the headers and the first bytes of the body
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def vendor_ca() -> Ca:
    return make_ca("the vendor CA")


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[Script, Any]]:
    """(script, serve(cert, key) -> url): a TLS server that answers as the script says, no client certificate."""
    script = Script()
    servers = contextlib.ExitStack()
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            script.requests.append(self.path)
            self.send_response(script.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(script.body)))
            self.end_headers()
            if script.hang_s:
                self.wfile.write(script.body[:3])
                self.wfile.flush()
                stop.wait(script.hang_s)
                return
            self.wfile.write(script.body)

        do_POST = do_GET  # noqa: N815

    def serve(cert: Path, key: Path) -> str:
        return servers.enter_context(serve_tls(Handler, cert, key))

    with servers:
        yield script, serve
        stop.set()


def link_to(url: str, ca_file: Path, tmp_path: Path, *, proxy_url: str = "") -> Uplink:
    """A link pinned to `ca_file`, as `connect` builds it, with a device certificate from a CA of its own."""
    config = device_config(tmp_path, proxy_url=proxy_url)
    enrollment = Enrollment(url, "ct-0001", "", tmp_path / "enrollment")
    now = datetime.datetime.now(datetime.UTC)
    cert, key = make_ca("device").issue("ct-0001", ExtendedKeyUsageOID.CLIENT_AUTH, None, not_before=now,
                                        not_after=now + datetime.timedelta(days=90))
    enrollment.directory.mkdir(exist_ok=True)
    enrollment.cert_file.write_bytes(cert)
    enrollment.key_file.write_bytes(key)
    return Uplink(config, enrollment, pinned_session(ca_file, proxy_url=proxy_url), LinkState())


# --- the TLS matrix ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "words"), [
    ("another CA", r"TLS with the portal failed \(certificate verify failed: unable to get local issuer"),
    ("expired", r"TLS with the portal failed \(certificate verify failed: certificate has expired"),
    ("wrong host name", r"TLS with the portal failed \(certificate verify failed: .*mismatch"),
])
def test_a_portal_certificate_that_is_not_right_is_refused(tmp_path: Path, vendor_ca: Ca, scripted: Any,
                                                           case: str, words: str) -> None:
    script, serve = scripted
    ca_file = vendor_ca.write(tmp_path / "ca.pem")
    good = serve(*vendor_ca.server(tmp_path, "good"))
    assert link_to(good, ca_file, tmp_path).poll_once(0) == 0  # positive control
    bad_cert = {"another CA": lambda: make_ca("another CA").server(tmp_path, "other"),
                "expired": lambda: vendor_ca.server(tmp_path, "expired", expired=True),
                "wrong host name": lambda: vendor_ca.server(tmp_path, "named", sans=("portal.example",))}[case]()
    bad = serve(*bad_cert)
    with pytest.raises(LinkError, match=words):
        link_to(bad, ca_file, tmp_path).poll_once(0)
    assert script.requests == ["/v1/inbox?wait=0"]  # the bad server never got a request through


def test_requests_ca_bundle_naming_another_ca_is_ignored(tmp_path: Path, vendor_ca: Ca, scripted: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _, serve = scripted
    other = make_ca("a CA the environment trusts")
    impostor = serve(*other.server(tmp_path, "impostor"))  # valid for 127.0.0.1, signed by the other CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other.write(tmp_path / "other-ca.pem")))
    # Positive control: an ordinary requests call honours the variable and trusts the impostor.
    assert requests.get(f"{impostor}/v1/inbox", timeout=10).status_code == 200
    with pytest.raises(LinkError, match="TLS with the portal failed"):
        link_to(impostor, vendor_ca.write(tmp_path / "ca.pem"), tmp_path).poll_once(0)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalProcess]:
    with PortalProcess(tmp_path_factory.mktemp("portal")) as running:
        yield running


def enrolled(portal: PortalProcess, tmp_path: Path, device_id: str, machine_id: str = "a" * 32,
             **settings: Any) -> tuple[Config, Enrollment]:
    config = device_config(tmp_path, machine_id, **settings)
    return config, enroll(config, portal.url, portal.ca_fingerprint, portal.add_device(device_id), device_id)


def test_without_its_client_certificate_the_device_is_refused(portal: PortalProcess, tmp_path: Path) -> None:
    config, enrollment = enrolled(portal, tmp_path, "ct-2001")
    link, _ = connect(config)
    assert link is not None
    assert link.poll_once(0) == 0  # positive control
    bare = Uplink(config, enrollment, pinned_session(enrollment.ca_file), LinkState())
    with pytest.raises(LinkError, match="refused this device"):
        bare.poll_once(0)
    assert bare.state.state == "refused"


def test_a_device_certificate_copied_to_another_device_does_not_connect(portal: PortalProcess,
                                                                        tmp_path: Path) -> None:
    config_a, enrollment_a = enrolled(portal, tmp_path / "a", "ct-2002")
    config_b, _ = enrolled(portal, tmp_path / "b", "ct-2003", machine_id="b" * 32)
    assert connect(config_b)[0] is not None  # positive control
    # B's enrollment folder gets A's certificate and key.
    for name in ("device.pem", "device.key"):
        (config_b.paths.state_dir / "portal" / name).write_bytes((enrollment_a.directory / name).read_bytes())
    link, state = connect(config_b)
    assert link is None
    assert state.state == "refused"
    assert "another machine" in state.error


def test_another_hardware_identity_is_refused_before_connecting(portal: PortalProcess, tmp_path: Path) -> None:
    config, _ = enrolled(portal, tmp_path, "ct-2004")
    assert connect(config)[0] is not None  # positive control
    moved = device_config(tmp_path, "c" * 32)  # the identity seam: another machine ID
    link, state = connect(moved)
    assert link is None
    assert "another machine" in state.error


# --- a site proxy --------------------------------------------------------------------------------------------------

@needs_tinyproxy
def test_the_portal_is_reached_through_the_configured_proxy_and_only_then(
        portal: PortalProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = portal.url.rsplit(":", 1)[1]
    with Proxy(tmp_path / "proxy") as proxy:
        config, _ = enrolled(portal, tmp_path, "ct-2005", proxy_url=proxy.url)
        assert f"127.0.0.1:{port}" in proxy.tunnels()  # enrollment went through it
        link, _ = connect(config)
        assert link is not None
        assert link.poll_once(0) == 0
        assert proxy.tunnels().count(f"127.0.0.1:{port}") >= 2
        # Without proxy_url the proxy variables of the environment are not used.
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        before = len(proxy.tunnels())
        direct, _ = connect(device_config(tmp_path))
        assert direct is not None
        assert direct.poll_once(0) == 0
        assert len(proxy.tunnels()) == before
    dead, _ = connect(device_config(tmp_path, proxy_url="http://127.0.0.1:9"))
    assert dead is not None
    with pytest.raises(LinkError, match="cannot reach the portal"):
        dead.poll_once(0)


# --- renewal ---------------------------------------------------------------------------------------------------------

def test_the_certificate_is_renewed_at_two_thirds_and_the_old_one_works_until_then(portal: PortalProcess,
                                                                                   tmp_path: Path) -> None:
    config, enrollment = enrolled(portal, tmp_path, "ct-2006")
    old_cert = x509.load_pem_x509_certificate(enrollment.cert_file.read_bytes())
    (tmp_path / "old.pem").write_bytes(enrollment.cert_file.read_bytes())
    (tmp_path / "old.key").write_bytes(enrollment.key_file.read_bytes())
    start = old_cert.not_valid_before_utc.timestamp()
    lifetime = old_cert.not_valid_after_utc.timestamp() - start
    link, state = connect(config)
    assert link is not None
    link._clock = lambda: start + 0.6 * lifetime  # injected: before two thirds, nothing happens
    assert link.renew_if_due() is False
    link._clock = lambda: start + 0.7 * lifetime
    assert link.renew_if_due() is True
    new_cert = x509.load_pem_x509_certificate(enrollment.cert_file.read_bytes())
    assert new_cert.serial_number != old_cert.serial_number
    assert new_cert.subject == old_cert.subject  # the same device
    assert binding_of(new_cert) == binding_of(old_cert)  # and machine
    assert state.renewals == 1
    old = pinned_session(enrollment.ca_file, client_cert=(tmp_path / "old.pem", tmp_path / "old.key"))
    new = pinned_session(enrollment.ca_file, client_cert=(enrollment.cert_file, enrollment.key_file))
    assert old.get(f"{portal.url}/v1/device", timeout=10).status_code == 200  # until the new one is seen
    assert new.get(f"{portal.url}/v1/device", timeout=10).status_code == 200
    old.close()  # a new connection, so that the portal sees the old certificate again
    assert old.get(f"{portal.url}/v1/device", timeout=10).status_code == 403
    link.session.close()
    assert link.poll_once(0) == 0  # the link's own session, with the files it now finds


# --- bad answers from the network ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "body", "words"), [
    (200, b"{not json", "not a JSON object"),
    (200, b"[1, 2]", "not a JSON object"),
    (200, b'{"messages": "none"}', "no list of messages"),
    (500, b"Internal Server Error", "answered 500"),
    (200, b'{"messages": [' + b'"x",' * (2 * 1024 * 1024) + b'"y"]}', "larger than"),
])
def test_a_garbled_answer_is_an_error_in_words(tmp_path: Path, vendor_ca: Ca, scripted: Any, status: int,
                                               body: bytes, words: str) -> None:
    script, serve = scripted
    link = link_to(serve(*vendor_ca.server(tmp_path, "good")), vendor_ca.write(tmp_path / "ca.pem"), tmp_path)
    script.status, script.body = status, body
    with pytest.raises(LinkError, match=words):
        link.poll_once(0)
    script.status, script.body = 200, b'{"messages": []}'
    assert link.poll_once(0) == 0  # and it goes on


def test_malformed_and_unknown_messages_are_passed_over_and_the_rest_handled(tmp_path: Path, vendor_ca: Ca,
                                                                             scripted: Any) -> None:
    script, serve = scripted
    link = link_to(serve(*vendor_ca.server(tmp_path, "good")), vendor_ca.write(tmp_path / "ca.pem"), tmp_path)
    handled: list[InboxMessage] = []

    def handler(message: InboxMessage) -> None:
        handled.append(message)
        if message.type == "teleport":
            raise PortalError("this agent does not handle 'teleport' messages")

    link.handler = handler
    script.body = json.dumps({"messages": [{"type": "session_request"}, 7, {"id": "m1", "type": "teleport",
                                                                           "body": {}},
                                           {"id": "m2", "type": "session_request", "body": {"name": "x"}}]}).encode()
    assert link.poll_once(0) == 4
    assert [m.id for m in handled] == ["m1", "m2"]
    assert script.requests[-1] == "/v1/inbox/ack"
    assert link.poll_once(0) == 4  # sent again (the scripted portal ignores acknowledgements): not handled again
    assert [m.id for m in handled] == ["m1", "m2"]


def test_a_portal_that_hangs_mid_answer_times_out_and_a_stop_does_not_wait(tmp_path: Path, vendor_ca: Ca,
                                                                           scripted: Any) -> None:
    script, serve = scripted
    link = link_to(serve(*vendor_ca.server(tmp_path, "good")), vendor_ca.write(tmp_path / "ca.pem"), tmp_path)
    script.hang_s = 60
    with pytest.raises(LinkError, match="cannot reach the portal"):
        link.poll_once(0)  # the read timeout is request_timeout_s (5 s here)
    seen = len(script.requests)
    link.start(lambda message: None)
    while len(script.requests) == seen:  # until the inbox thread waits on the hanging portal
        time.sleep(0.02)
    started = time.monotonic()
    link.stop()
    assert time.monotonic() - started < 3
