"""Enrollment on the device (agent.enroll, agent.identity, agent.connection) without the reference portal.

A small HTTPS server on loopback plays the portal: it hands out a CA at `/v1/ca` and signs what comes to
`/v1/enroll`, and a test makes it misbehave in one way at a time (another CA, another device, another machine,
another key, a refusal, garbage). Every refusal checks what matters to site IT: the one-time password did not go
to a server that was not proven to be the vendor's, and nothing was installed (an earlier enrollment stays as it
was). The end-to-end runs against the real portal are in tests/test_uplink.py and tests/test_connection.py.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.cli import main
from agent.config import Config, from_mapping
from agent.connection import pinned_session
from agent.enroll import ATTEMPTS_FILE, PORTAL_DIR, Enrollment, enroll, take_attempts, totp_secret
from agent.errors import ConfigError, PortalError
from agent.identity import BINDING_URI_PREFIX, binding_of, check_binding, hardware_binding
from tests.pki import Ca, make_ca
from tests.tls_server import serve_tls

MACHINE_ID = "5f1c0ffee0ddba11cafebabe12345678"
DEVICE_ID = "ct-0042"
OTP = "K7QF-2M9X"


def device_config(tmp_path: Path, machine_id: str = MACHINE_ID, **portal: Any) -> Config:
    """A device whose state and identity files live in `tmp_path` (the identity seam of [portal])."""
    machine = tmp_path / "machine"
    machine.mkdir(parents=True, exist_ok=True)
    (machine / "machine-id").write_text(machine_id + "\n")
    return from_mapping({"paths": {"state_dir": str(tmp_path / "state")},
                         "portal": {"machine_id_file": str(machine / "machine-id"),
                                    "product_uuid_file": str(machine / "no-uuid"),
                                    "product_serial_file": str(machine / "no-serial"), **portal}})


def fingerprint(ca: Ca) -> str:
    return hashlib.sha256(ca.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- a scripted portal ---------------------------------------------------------------------------------------------

@dataclass
class Script:
    """How the scripted portal answers. By default it is a correct portal for the vendor CA."""

    vendor: Ca
    signer: Ca | None = None  # who signs the device certificate (None: the vendor CA)
    common_name: str | None = None  # the certificate's CN (None: the one asked for)
    binding: str | None = None  # the certificate's binding (None: the one asked for)
    other_key: bool = False  # certify a key of the portal's own instead of the device's
    status: int = 200
    body: bytes | None = None  # answer /v1/enroll with this instead of a certificate
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    enroll_bodies: list[dict[str, Any]] = field(default_factory=list)

    def certificate_for(self, csr_pem: str) -> bytes:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        asked = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        alt = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uri = alt.get_values_for_type(x509.UniformResourceIdentifier)[0]
        signer = self.signer or self.vendor
        now = datetime.datetime.now(datetime.UTC)
        public_key = ec.generate_private_key(ec.SECP256R1()).public_key() if self.other_key else csr.public_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.common_name or str(asked))])
        san = BINDING_URI_PREFIX + self.binding if self.binding is not None else uri
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(signer.certificate.subject)
                       .public_key(public_key).serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(minutes=5))
                       .not_valid_after(now + datetime.timedelta(days=90))
                       .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]),
                                      critical=False)
                       .sign(signer.key, hashes.SHA256()))
        return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def vendor_ca() -> Ca:
    return make_ca("the vendor CA")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """serve(script, tls_ca) -> URL: a TLS server for 127.0.0.1 whose certificate `tls_ca` signed, answering as
    `script` says (and, for anything else, 200 `{}`)."""
    servers = contextlib.ExitStack()

    def start(script: Script, tls_ca: Ca) -> str:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                script.seen.append(("GET", self.path))
                if self.path != "/v1/ca":
                    return self.answer(200, b"{}")
                pem = script.vendor.certificate.public_bytes(serialization.Encoding.PEM).decode()
                # The "sha256" field lies on purpose: the device must compute the fingerprint itself.
                self.answer(200, json.dumps({"ca": pem, "sha256": "00" * 32}).encode())

            def do_POST(self) -> None:  # noqa: N802
                script.seen.append(("POST", self.path))
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                script.enroll_bodies.append(request)
                if script.body is not None or script.status != 200:
                    return self.answer(script.status, script.body or b"{}")
                certificate = script.certificate_for(request["csr"]).decode()
                ca = script.vendor.certificate.public_bytes(serialization.Encoding.PEM).decode()
                self.answer(200, json.dumps({"certificate": certificate, "ca": ca}).encode())

        return servers.enter_context(serve_tls(Handler, *tls_ca.server(tmp_path / "tls", f"server-{id(script)}")))

    with servers:
        yield start


def installed(config: Config) -> dict[str, bytes]:
    """The files of the installed enrollment, by name (empty: none)."""
    directory = config.paths.state_dir / PORTAL_DIR
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.is_dir() else {}


# --- the hardware binding ------------------------------------------------------------------------------------------

def bound_certificate(binding: str | None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    san: list[x509.GeneralName] | None = \
        [x509.UniformResourceIdentifier(BINDING_URI_PREFIX + binding)] if binding is not None else None
    pem, _ = make_ca().issue(DEVICE_ID, ExtendedKeyUsageOID.CLIENT_AUTH, san, not_before=now,
                             not_after=now + datetime.timedelta(days=1))
    return x509.load_pem_x509_certificate(pem)


def test_the_binding_depends_on_the_machine_id_file_and_never_shows_it(tmp_path: Path) -> None:
    here = device_config(tmp_path / "here").portal
    there = device_config(tmp_path / "there", machine_id="0" * 32).portal
    binding = hardware_binding(DEVICE_ID, here)
    assert binding == hardware_binding(DEVICE_ID, here)
    assert binding != hardware_binding(DEVICE_ID, there)
    assert MACHINE_ID not in binding
    assert binding != hashlib.sha256(MACHINE_ID.encode()).hexdigest()  # keyed: not a plain hash of the ID


def test_check_binding_accepts_this_machine_and_refuses_a_copy_from_another(tmp_path: Path) -> None:
    portal = device_config(tmp_path).portal
    mine = bound_certificate(hardware_binding(DEVICE_ID, portal))
    assert binding_of(mine) == hardware_binding(DEVICE_ID, portal)
    check_binding(mine, DEVICE_ID, portal)  # positive control
    for other in (bound_certificate("ab" * 32), bound_certificate(None)):
        with pytest.raises(PortalError, match="issued to another machine.*servicegate enroll"):
            check_binding(other, DEVICE_ID, portal)
    assert binding_of(bound_certificate(None)) is None


# --- the pinned session --------------------------------------------------------------------------------------------

def test_the_pinned_session_trusts_its_ca_and_nothing_the_environment_names(
        tmp_path: Path, vendor_ca: Ca, serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_ca("a CA the environment trusts")
    genuine = serve(Script(vendor_ca), vendor_ca)
    impostor = serve(Script(vendor_ca), other)  # valid for 127.0.0.1, signed by the other CA
    other_file = other.write(tmp_path / "other-ca.pem")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(other_file))
    # Positive control: an ordinary requests call honours the variables and trusts the impostor.
    assert requests.get(f"{impostor}/v1/ping", timeout=10).status_code == 200
    with pinned_session(vendor_ca.write(tmp_path / "ca.pem")) as session:
        assert session.get(f"{genuine}/v1/ping", timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"{impostor}/v1/ping", timeout=10)


def test_only_the_configured_proxy_is_used(tmp_path: Path, vendor_ca: Ca, serve: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url = serve(Script(vendor_ca), vendor_ca)
    ca_file = vendor_ca.write(tmp_path / "ca.pem")
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    # Positive control: an ordinary requests call goes to the proxy the environment names, and fails.
    with pytest.raises(requests.exceptions.ProxyError):
        requests.get(f"{url}/v1/ping", verify=str(ca_file), timeout=10)
    with pinned_session(ca_file) as direct:
        assert direct.get(f"{url}/v1/ping", timeout=10).status_code == 200
    with pinned_session(ca_file, proxy_url=dead_proxy) as proxied, \
            pytest.raises(requests.exceptions.ProxyError):
        proxied.get(f"{url}/v1/ping", timeout=10)


def test_the_pinned_session_carries_the_client_certificate(tmp_path: Path) -> None:
    with pinned_session(tmp_path / "ca.pem", client_cert=(tmp_path / "d.pem", tmp_path / "d.key")) as session:
        assert session.cert == (str(tmp_path / "d.pem"), str(tmp_path / "d.key"))
        assert session.verify == str(tmp_path / "ca.pem")
        assert session.trust_env is False
        assert session.proxies == {}


# --- enrollment ----------------------------------------------------------------------------------------------------

def test_enrollment_installs_a_key_made_here_and_a_certificate_for_this_device_and_machine(
        tmp_path: Path, vendor_ca: Ca, serve: Any) -> None:
    config = device_config(tmp_path)
    script = Script(vendor_ca)
    url = serve(script, vendor_ca)
    enrollment = enroll(config, url + "/", fingerprint(vendor_ca), OTP, DEVICE_ID)

    assert enrollment == Enrollment.load(config.paths.state_dir)
    assert (enrollment.portal_url, enrollment.device_id, enrollment.ca_sha256) == (url, DEVICE_ID,
                                                                                   fingerprint(vendor_ca))
    certificate = x509.load_pem_x509_certificate(enrollment.cert_file.read_bytes())
    key = serialization.load_pem_private_key(enrollment.key_file.read_bytes(), None)
    assert certificate.public_key() == key.public_key()
    check_binding(certificate, DEVICE_ID, config.portal)
    assert enrollment.ca_file.read_bytes() == vendor_ca.certificate.public_bytes(serialization.Encoding.PEM)
    info = json.loads((enrollment.directory / "enrollment.json").read_text())
    assert datetime.datetime.fromisoformat(info["enrolled_at"]).utcoffset() == datetime.timedelta(0)

    assert stat.S_IMODE(enrollment.directory.stat().st_mode) == 0o700
    for path in enrollment.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in config.paths.state_dir.iterdir()) == sorted([PORTAL_DIR, ATTEMPTS_FILE])
    # The portal got the device ID, the password, a request and the engineers' one-time-password secret (kept on the
    # device in a file of its own); never the key or the raw machine ID.
    [sent] = script.enroll_bodies
    assert (sent["device_id"], sent["otp"], sorted(sent)) == (DEVICE_ID, OTP, ["csr", "device_id", "otp",
                                                                               "totp_secret"])
    assert enrollment.totp_file.read_text().strip() == sent["totp_secret"]
    assert totp_secret(config.paths.state_dir) == base64.b32decode(sent["totp_secret"])
    assert len(base64.b32decode(sent["totp_secret"])) == 20
    assert MACHINE_ID not in json.dumps(sent)
    assert [a["outcome"] for a in take_attempts(config.paths.state_dir)] == ["enrolled"]


@pytest.mark.parametrize("typed", [
    "SHA256:{colons}",  # as `openssl x509 -fingerprint -sha256` prints it, with a prefix
    "  {upper}  ",
    "sha256 fingerprint={colons}",
    "{spaced}",
])
def test_the_fingerprint_may_be_typed_as_printed(tmp_path: Path, vendor_ca: Ca, serve: Any, typed: str) -> None:
    hex_ = fingerprint(vendor_ca).upper()
    pairs = [hex_[i:i + 2] for i in range(0, 64, 2)]
    text = typed.format(colons=":".join(pairs), upper=hex_, spaced=" ".join(pairs))
    enroll(device_config(tmp_path), serve(Script(vendor_ca), vendor_ca), text, OTP, DEVICE_ID)


def test_a_wrong_fingerprint_is_refused_before_the_password_is_sent_and_nothing_is_written(
        tmp_path: Path, vendor_ca: Ca, serve: Any) -> None:
    config = device_config(tmp_path)
    script = Script(make_ca("a CA that is not the vendor's"))  # the server's own CA, served at /v1/ca
    url = serve(script, script.vendor)
    with pytest.raises(PortalError, match=f"fingerprint {fingerprint(script.vendor)}, not the "
                                          f"{fingerprint(vendor_ca)} you were given: do not enroll"):
        enroll(config, url, fingerprint(vendor_ca), OTP, DEVICE_ID)
    assert script.seen == [("GET", "/v1/ca")]  # the one-time password never left the device
    assert sorted(p.name for p in config.paths.state_dir.iterdir()) == [ATTEMPTS_FILE]
    [attempt] = take_attempts(config.paths.state_dir)
    assert (attempt["outcome"], attempt["device_id"]) == ("refused", DEVICE_ID)


def test_a_server_that_hands_out_the_right_ca_but_is_not_signed_by_it_never_gets_the_password(
        tmp_path: Path, vendor_ca: Ca, serve: Any) -> None:
    """A man in the middle can copy the vendor's CA certificate, not its key: the pinned TLS check stops him."""
    config = device_config(tmp_path)
    script = Script(vendor_ca)
    url = serve(script, make_ca("the man in the middle"))
    with pytest.raises(PortalError, match="TLS with .* failed"):
        enroll(config, url, fingerprint(vendor_ca), OTP, DEVICE_ID)
    assert script.seen == [("GET", "/v1/ca")]
    assert installed(config) == {}
    assert not (config.paths.state_dir / f"{PORTAL_DIR}.new").exists()


BAD_ANSWERS: dict[str, tuple[dict[str, Any], str]] = {
    "another CA signed it": ({"signer": make_ca("another CA")}, "not signed by its CA"),
    "a forged signature": ({"signer": make_ca("the vendor CA")}, "not signed by its CA"),  # same name, other key
    "another device": ({"common_name": "ct-9999"}, "for another device than 'ct-0042'"),
    "another machine": ({"binding": "ab" * 32}, "for another machine"),
    "another key": ({"other_key": True}, "for another key"),
    "refused in words": ({"status": 403, "body": b'{"detail": "the one-time password is wrong; ask the vendor"}'},
                         "the portal refused: the one-time password is wrong; ask the vendor"),
    "refused without words": ({"status": 502, "body": b"<html>Bad Gateway</html>"}, "the portal refused: HTTP 502"),
    "no certificate": ({"body": b'{"certificate": 42}'}, "holds no certificate"),
    "no certificate at all": ({"body": b'{"ca": "x"}'}, "holds no certificate"),
    "not an object": ({"body": b"[1, 2]"}, "did not answer with a JSON object"),
}


@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_a_bad_answer_is_refused_and_the_earlier_enrollment_stays(tmp_path: Path, vendor_ca: Ca, serve: Any,
                                                                  case: str) -> None:
    config = device_config(tmp_path)
    script = Script(vendor_ca)
    url = serve(script, vendor_ca)
    enroll(config, url, fingerprint(vendor_ca), OTP, DEVICE_ID)  # positive control, and the earlier enrollment
    before = installed(config)
    changes, words = BAD_ANSWERS[case]
    for name, value in changes.items():
        setattr(script, name, value)
    with pytest.raises(PortalError, match=words):
        enroll(config, url, fingerprint(vendor_ca), OTP, DEVICE_ID)
    assert installed(config) == before
    assert sorted(p.name for p in config.paths.state_dir.iterdir()) == sorted([PORTAL_DIR, ATTEMPTS_FILE])
    assert [a["outcome"] for a in take_attempts(config.paths.state_dir)] == ["enrolled", "refused"]


def test_a_portal_that_is_not_there_is_said_in_words(tmp_path: Path, vendor_ca: Ca) -> None:
    config = device_config(tmp_path)
    with pytest.raises(PortalError, match="cannot reach https://127.0.0.1:.*/v1/ca"):
        enroll(config, f"https://127.0.0.1:{closed_port()}", fingerprint(vendor_ca), OTP, DEVICE_ID)
    assert installed(config) == {}


@pytest.mark.parametrize(("url", "typed", "words"), [
    ("http://portal.example", "ab" * 32, "https:// only"),
    ("https://portal.example", "ab" * 31, "not a SHA-256 fingerprint"),
    ("https://portal.example", "zz" * 32, "not a SHA-256 fingerprint"),
])
def test_bad_arguments_are_refused_before_anything_is_fetched(tmp_path: Path, url: str, typed: str,
                                                              words: str) -> None:
    config = device_config(tmp_path)
    with pytest.raises(PortalError, match=words):
        enroll(config, url, typed, OTP, DEVICE_ID)
    assert installed(config) == {}


def test_a_state_folder_this_user_cannot_write_stops_enrollment_before_the_portal_is_asked(
        tmp_path: Path, vendor_ca: Ca, serve: Any) -> None:
    (tmp_path / "a-file").write_text("")
    config = from_mapping({"paths": {"state_dir": str(tmp_path / "a-file" / "state")},
                           "portal": {"machine_id_file": str(tmp_path / "a-file")}})
    script = Script(vendor_ca)
    with pytest.raises(PortalError, match="cannot write the agent's state folder .*as root or as the agent's user"):
        enroll(config, serve(script, vendor_ca), fingerprint(vendor_ca), OTP, DEVICE_ID)
    assert script.seen == []  # the one-time password is not used up for an enrollment that cannot be installed


# --- the installed enrollment --------------------------------------------------------------------------------------

def test_an_enrollment_that_is_not_there_or_damaged(tmp_path: Path, vendor_ca: Ca, serve: Any) -> None:
    config = device_config(tmp_path)
    state_dir = config.paths.state_dir
    assert Enrollment.load(state_dir) is None
    enrollment = enroll(config, serve(Script(vendor_ca), vendor_ca), fingerprint(vendor_ca), OTP, DEVICE_ID)
    enrollment.key_file.unlink()
    with pytest.raises(PortalError, match="device.key is missing; enroll again"):
        Enrollment.load(state_dir)
    (enrollment.directory / "enrollment.json").write_text('{"portal_url": ')
    with pytest.raises(PortalError, match="enrollment.json is damaged .*enroll again"):
        Enrollment.load(state_dir)


@pytest.mark.parametrize("new_complete", [True, False])
def test_a_swap_cut_short_by_a_crash_is_finished_when_the_enrollment_is_next_read(
        tmp_path: Path, vendor_ca: Ca, serve: Any, new_complete: bool) -> None:
    """Between the swap's two renames there is no `portal` folder: the next read finishes or undoes the swap."""
    config = device_config(tmp_path)
    url = serve(Script(vendor_ca), vendor_ca)
    state_dir = config.paths.state_dir
    enroll(config, url, fingerprint(vendor_ca), OTP, DEVICE_ID)
    first = installed(config)
    (state_dir / PORTAL_DIR).rename(state_dir / "first")
    enroll(config, url, fingerprint(vendor_ca), OTP, DEVICE_ID)
    second = installed(config)
    (state_dir / "first").rename(state_dir / f"{PORTAL_DIR}.old")
    (state_dir / PORTAL_DIR).rename(state_dir / f"{PORTAL_DIR}.new")
    if not new_complete:
        (state_dir / f"{PORTAL_DIR}.new" / "enrollment.json").unlink()
    assert Enrollment.load(state_dir) is not None
    assert installed(config) == (second if new_complete else first)


# --- the command line ----------------------------------------------------------------------------------------------

def test_servicegate_enroll_exits_0_when_enrolled_and_1_with_a_sentence_when_refused(
        tmp_path: Path, vendor_ca: Ca, serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = device_config(tmp_path)
    agent_toml = tmp_path / "agent.toml"
    agent_toml.write_text(f'[paths]\nstate_dir = "{config.paths.state_dir}"\n[portal]\n'
                          f'machine_id_file = "{config.portal.machine_id_file}"\n')
    url = serve(Script(vendor_ca), vendor_ca)
    args = ["--config", str(agent_toml), "enroll", "--portal", url, "--otp", OTP, "--device-id", DEVICE_ID]
    assert main([*args, "--ca-fingerprint", fingerprint(vendor_ca)]) == 0
    assert Enrollment.load(config.paths.state_dir) is not None
    capsys.readouterr()
    assert main([*args, "--ca-fingerprint", "ab" * 32]) == 1
    err = capsys.readouterr().err
    assert err.startswith("servicegate: the portal's CA has the fingerprint")
    assert "Traceback" not in err


# --- [portal] in agent.toml ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("proxy", ["", "http://proxy.hospital.example:3128", "https://10.0.0.1:8443"])
def test_a_proxy_url_with_a_scheme_is_accepted(proxy: str) -> None:
    assert from_mapping({"portal": {"proxy_url": proxy}}).portal.proxy_url == proxy


@pytest.mark.parametrize("proxy", ["proxy.example:3128", "socks5://proxy.example:1080", "ftp://x"])
def test_a_proxy_url_without_an_http_scheme_is_refused_with_an_example(proxy: str) -> None:
    with pytest.raises(ConfigError, match=f"\\[portal\\] proxy_url = '{proxy}' is not a proxy URL.*http://"):
        from_mapping({"portal": {"proxy_url": proxy}})
