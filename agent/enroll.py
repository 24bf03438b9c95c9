"""`servicegate enroll`: make this device known to the vendor's portal, once, with a one-time password.

1. Fetch the portal's CA trusting nothing, and go on only if its SHA-256 fingerprint is the one site IT was given.
   From then on every connection checks the portal's certificate against that CA alone.
2. Make the device key (EC P-256) here; it never leaves the device. Without a TPM its protection is its file mode
   (0600, in the agent's 0700 state folder).
3. Send a certificate request naming the device ID and this machine's hardware binding (agent.identity), with the
   one-time password and a new 160-bit secret for the engineers' one-time passwords (agent.totp), which the portal
   keeps to compute their codes. Check what comes back: issued by the pinned CA, for this device, this machine,
   this key.
4. Install the enrollment: `<state_dir>/portal/` holds `ca.pem`, `device.pem`, `device.key`, `totp.key` (the
   secret, base32, 0600; like the key, protected only by its file mode) and `enrollment.json`.
   It is written as a new folder and swapped in by rename, so an enrollment (or a certificate renewal, which uses
   the same swap) is either whole or not there, and a failed one leaves the previous one as it was.

Every attempt, with its outcome, is appended to `<state_dir>/enrollment-attempts.jsonl`; the agent moves those
lines into its audit log when it starts (the audit log has one writer, the agent).
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import urllib3
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tuf.api._payload import Root  # where tuf.api.metadata takes it from (it re-exports without __all__)
from tuf.api.metadata import Metadata

from agent import totp
from agent.config import Config, PortalConfig
from agent.connection import pinned_session, short, tls_reason
from agent.errors import PortalError
from agent.fsutil import fsync_dir
from agent.identity import BINDING_URI_PREFIX, binding_of, hardware_binding

PORTAL_DIR = "portal"
TUF_ROOT_FILE = "tuf-root.json"  # agent.updates reads it
ATTEMPTS_FILE = "enrollment-attempts.jsonl"
TIMEOUT_S = (10.0, 30.0)


@dataclass(frozen=True)
class Enrollment:
    portal_url: str
    device_id: str
    ca_sha256: str
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "device.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "device.key"

    @property
    def totp_file(self) -> Path:
        """The engineers' one-time-password secret (base32, 0600), shared with the portal at enrollment."""
        return self.directory / "totp.key"

    @classmethod
    def load(cls, state_dir: Path) -> Enrollment | None:
        """This device's enrollment, or None when it was never enrolled."""
        directory = _settle(state_dir)
        try:
            info = json.loads((directory / "enrollment.json").read_text(encoding="utf-8"))
            enrollment = cls(str(info["portal_url"]), str(info["device_id"]), str(info["ca_sha256"]), directory)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PortalError(f"{directory / 'enrollment.json'} is damaged ({exc}); enroll again with "
                              "`servicegate enroll`") from None
        for path in (enrollment.ca_file, enrollment.cert_file, enrollment.key_file, enrollment.totp_file):
            if not path.is_file():
                raise PortalError(f"{path} is missing; enroll again with `servicegate enroll`")
        return enrollment


def totp_secret(state_dir: Path) -> bytes:
    """The engineers' one-time-password secret this device was enrolled with; PortalError when there is none."""
    path = state_dir / PORTAL_DIR / "totp.key"
    try:
        secret = base64.b32decode(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        raise PortalError("this device has no secret for engineers' one-time passwords: enroll it "
                          "(`servicegate enroll`)") from None
    except (OSError, ValueError) as exc:
        raise PortalError(f"{path} cannot be read ({exc}); enroll the device again") from None
    if len(secret) != totp.SECRET_BYTES:
        raise PortalError(f"{path} does not hold a {totp.SECRET_BYTES * 8}-bit secret; enroll the device again")
    return secret


def enroll(config: Config, portal_url: str, ca_fingerprint: str, otp: str, device_id: str) -> Enrollment:
    """Enroll this device; PortalError says why not. Every attempt is recorded for the audit log.

    The state folder is checked first: an attempt that could not be recorded, or an enrollment that could not be
    installed, must not reach the portal (it would use up the one-time password for nothing).
    """
    state_dir = config.paths.state_dir
    _check_state_dir(state_dir)
    try:
        enrollment = _enroll(config, portal_url.rstrip("/"), ca_fingerprint, otp, device_id)
    except PortalError as exc:
        _record_attempt(state_dir, {"device_id": device_id, "portal_url": portal_url, "outcome": "refused",
                                    "why": str(exc)})
        raise
    _record_attempt(state_dir, {"device_id": device_id, "portal_url": portal_url, "outcome": "enrolled",
                                "ca_sha256": enrollment.ca_sha256})
    return enrollment


def _check_state_dir(state_dir: Path) -> None:
    """PortalError, before anything else happens, when this user cannot write the agent's state folder."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = state_dir / f".{PORTAL_DIR}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PortalError(f"cannot write the agent's state folder {state_dir} ({exc.strerror or exc}): run "
                          "`servicegate enroll` as root or as the agent's user, and check [paths] state_dir in "
                          "agent.toml") from None


def _enroll(config: Config, portal_url: str, ca_fingerprint: str, otp: str, device_id: str) -> Enrollment:
    if not portal_url.startswith("https://"):
        raise PortalError(f"--portal {portal_url!r}: the portal is reached over https:// only")
    expected = _normal_fingerprint(ca_fingerprint)
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise PortalError(f"--ca-fingerprint {ca_fingerprint!r} is not a SHA-256 fingerprint (64 hex digits, colons "
                          "allowed); copy it again from what the vendor gave you")
    ca = _fetch_ca(portal_url, config.portal.proxy_url)
    actual = hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()
    if actual != expected:
        raise PortalError(f"the portal's CA has the fingerprint {actual}, not the {expected} you were given: do not "
                          "enroll against this server; check the portal address and ask the vendor")
    staging = config.paths.state_dir / f"{PORTAL_DIR}.new"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700, parents=True)
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        _write(staging / "ca.pem", ca_pem)
        key, csr = new_key_and_csr(device_id, config.portal)
        secret = base64.b32encode(totp.new_secret())
        session = pinned_session(staging / "ca.pem", proxy_url=config.portal.proxy_url)
        with session:
            answer = _post(session, f"{portal_url}/v1/enroll", {"device_id": device_id, "otp": otp, "csr": csr,
                                                                 "totp_secret": secret.decode()})
        certificate = _accept(answer, ca, device_id, key, config.portal)
        tuf_root = _tuf_root(answer)
        if tuf_root is not None:  # the vendor's TUF root: what every update is checked against (agent.updates)
            _write(staging / TUF_ROOT_FILE, tuf_root)
        _write(staging / "totp.key", secret + b"\n")
        _write(staging / "device.key", _key_pem(key))
        _write(staging / "device.pem", certificate.public_bytes(serialization.Encoding.PEM))
        _write(staging / "enrollment.json", json.dumps({
            "portal_url": portal_url, "device_id": device_id, "ca_sha256": actual,
            "enrolled_at": datetime.now(UTC).isoformat()}, indent=2).encode())
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise PortalError(f"cannot write the enrollment to {staging} ({exc.strerror or exc}); nothing was "
                          "installed: free space or fix the folder's permissions and enroll again") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        _swap_in(config.paths.state_dir)
    except OSError as exc:
        raise PortalError(f"cannot install the enrollment in {config.paths.state_dir} ({exc.strerror or exc}); "
                          "fix the folder and enroll again") from None
    enrollment = Enrollment.load(config.paths.state_dir)
    assert enrollment is not None
    return enrollment


def new_key_and_csr(device_id: str, portal: PortalConfig) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A new device key and its certificate request: the device ID and this machine's hardware binding."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
               BINDING_URI_PREFIX + hardware_binding(device_id, portal))]), critical=False)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def replace_credentials(enrollment: Enrollment, key: ec.EllipticCurvePrivateKey, cert_pem: str,
                        portal: PortalConfig) -> x509.Certificate:
    """Install a renewed certificate and its key in place of the current ones (the same swap as enrollment)."""
    ca = x509.load_pem_x509_certificate(enrollment.ca_file.read_bytes())
    certificate = _accept({"certificate": cert_pem}, ca, enrollment.device_id, key, portal)
    state_dir = enrollment.directory.parent
    staging = state_dir / f"{PORTAL_DIR}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    # enrollment.json last: it marks a whole folder
    for name in ("ca.pem", "totp.key", "inbox-handled.json", "enrollment.json"):
        if (enrollment.directory / name).exists():
            _write(staging / name, (enrollment.directory / name).read_bytes())
    _write(staging / "device.key", _key_pem(key))
    _write(staging / "device.pem", certificate.public_bytes(serialization.Encoding.PEM))
    _swap_in(state_dir)
    return certificate


def take_attempts(state_dir: Path) -> list[dict[str, Any]]:
    """The enrollment attempts recorded since the last call, which removes them (the agent audits them)."""
    path, taken = state_dir / ATTEMPTS_FILE, state_dir / f"{ATTEMPTS_FILE}.taken"
    try:
        if not taken.exists():  # a file taken before, whose lines were not audited yet (a crash), goes first
            path.rename(taken)
        lines = taken.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [{"outcome": "unreadable", "why": f"cannot read {path}: {exc.strerror}"}]
    attempts = []
    for line in lines:
        try:
            attempts.append(json.loads(line))
        except ValueError:
            attempts.append({"outcome": "unreadable", "line": line[:200]})
    with contextlib.suppress(OSError):  # if it stays, its lines are audited again: twice rather than never
        taken.unlink()
    return attempts


# --- steps ------------------------------------------------------------------------------------------------------

def _fetch_ca(portal_url: str, proxy_url: str) -> x509.Certificate:
    """The portal's CA, fetched before anything is trusted: it counts only once its fingerprint matched."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": proxy_url, "http": proxy_url} if proxy_url else {}
    with session, warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        answer = _get(session, f"{portal_url}/v1/ca")
    try:
        return x509.load_pem_x509_certificate(str(answer["ca"]).encode())
    except (KeyError, ValueError) as exc:
        raise PortalError(f"{portal_url}/v1/ca gave no CA certificate ({exc}); is this the vendor's portal?") from None


def _get(session: requests.Session, url: str) -> dict[str, Any]:
    return _answer(url, lambda: session.get(url, timeout=TIMEOUT_S, verify=False))


def _post(session: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return _answer(url, lambda: session.post(url, json=body, timeout=TIMEOUT_S))


def _answer(url: str, call: Any) -> dict[str, Any]:
    try:
        response = call()
    except requests.exceptions.SSLError as exc:
        raise PortalError(f"TLS with {url} failed: {tls_reason(exc)}; the server's certificate must come from the "
                          "CA you checked, be valid now and name this address") from None
    except requests.RequestException as exc:
        raise PortalError(f"cannot reach {url} ({type(exc).__name__}: {short(exc)}); check the address, the "
                          "network and [portal] proxy_url") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200:
        detail = answer.get("detail") if isinstance(answer, dict) else None
        raise PortalError(f"the portal refused: {detail or f'HTTP {response.status_code}'}")
    if not isinstance(answer, dict):
        raise PortalError(f"{url} did not answer with a JSON object; is this the vendor's portal?")
    return answer


def _accept(answer: dict[str, Any], ca: x509.Certificate, device_id: str, key: ec.EllipticCurvePrivateKey,
            portal: PortalConfig) -> x509.Certificate:
    """The certificate in the portal's answer, if it is what was asked for."""
    try:
        certificate = x509.load_pem_x509_certificate(str(answer["certificate"]).encode())
    except (KeyError, ValueError) as exc:
        raise PortalError(f"the portal's answer holds no certificate ({short(exc)}); is this the vendor's "
                          "portal?") from None
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        why = short(exc) or "the signature does not verify"
        raise PortalError(f"the certificate the portal sent is not signed by its CA ({why}); nothing was "
                          "installed: ask the vendor") from None
    if certificate.not_valid_after_utc <= datetime.now(UTC):
        raise PortalError(f"the certificate the portal sent expired at {certificate.not_valid_after_utc}; nothing was "
                          "installed: check the portal's clock and ask the vendor")
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != device_id:
        raise PortalError(f"the portal issued a certificate for another device than {device_id!r}")
    if binding_of(certificate) != hardware_binding(device_id, portal):
        raise PortalError("the portal issued a certificate for another machine (hardware binding)")
    if certificate.public_key() != key.public_key():
        raise PortalError("the portal issued a certificate for another key")
    return certificate


def _tuf_root(answer: dict[str, Any]) -> bytes | None:
    """The vendor's TUF root metadata from the enrollment answer, if the portal serves updates: it must be a root
    that its own keys sign. None when the answer has none (this device then refuses every update)."""
    text = answer.get("tuf_root")
    if text is None:
        return None
    try:
        data = str(text).encode()
        root = Metadata[Root].from_bytes(data)
        root.verify_delegate(Root.type, root)
    except Exception as exc:  # noqa: BLE001 - securesystemslib and tuf raise several kinds for bad metadata
        raise PortalError(f"the portal's TUF root is not valid root metadata signed by its own keys ({short(exc)}); "
                          "nothing was installed: ask the vendor") from None
    return data


# --- files ------------------------------------------------------------------------------------------------------

def _swap_in(state_dir: Path) -> None:
    """`portal.new` becomes `portal` by two renames; `_settle` finishes a swap a crash interrupted."""
    staging, current, old = (state_dir / f"{PORTAL_DIR}{s}" for s in (".new", "", ".old"))
    fsync_dir(staging)
    shutil.rmtree(old, ignore_errors=True)
    if current.exists():
        current.rename(old)
    staging.rename(current)
    fsync_dir(state_dir)
    shutil.rmtree(old, ignore_errors=True)


def _settle(state_dir: Path) -> Path:
    """The enrollment folder, after finishing a swap that a crash interrupted between its two renames."""
    staging, current, old = (state_dir / f"{PORTAL_DIR}{s}" for s in (".new", "", ".old"))
    if not current.exists():
        if (staging / "enrollment.json").exists():  # written last: the staged folder is whole
            staging.rename(current)
        elif old.exists():
            old.rename(current)
    return current


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _record_attempt(state_dir: Path, attempt: dict[str, Any]) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = json.dumps({"time": datetime.now(UTC).isoformat(), "user": getpass.getuser(), **attempt},
                      sort_keys=True) + "\n"
    fd = os.open(state_dir / ATTEMPTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line)


def _normal_fingerprint(text: str) -> str:
    text = text.strip().lower().removeprefix("sha256:").removeprefix("sha256 fingerprint=")
    return "".join(c for c in text if c not in ": ")
