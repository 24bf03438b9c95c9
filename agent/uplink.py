"""The agent's link to the portal: the pinned mutual-TLS session everything uses, the inbox loop, and certificate
renewal. The agent only ever calls out; nothing here listens.

- **Connecting.** `connect` loads the enrollment (`servicegate enroll` made it), refuses when the certificate's
  hardware binding is not this machine's (a copied configuration must not connect), and builds the one
  `requests.Session`: the vendor CA as the only trust anchor, the device certificate, no proxy or CA from the
  environment, the site proxy only from `[portal] proxy_url`. The telemetry shipper gets the same session.
- **Inbox.** A thread long-polls `GET /v1/inbox`, hands each message to the agent (on the daemon's event loop),
  remembers its ID, and acknowledges it. A message handled before (the portal sent it again because the
  acknowledgement was lost) is only acknowledged again. Unknown types are recorded and acknowledged, never
  retried forever. When the portal cannot be reached it waits with exponential backoff and full jitter
  (at most 10 minutes) and goes on when the portal is back.
- **Renewal.** At two thirds of the certificate's lifetime the thread asks for a new one (`POST /v1/renew`, a
  new key, the same hardware binding). The new key and certificate replace the old ones on disk; the session
  reads them for its next connection, and the portal accepts the old certificate until then: no downtime.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography import x509

from agent.config import Config
from agent.connection import pinned_session, short, tls_reason
from agent.enroll import Enrollment, new_key_and_csr, replace_credentials
from agent.errors import PortalError, ServiceGateError
from agent.fsutil import read_json, write_json
from agent.identity import check_binding
from agent.protocol import MAX_CASE_ID
from telemetry.shipper import Stopped, call_until_stopped, full_jitter

log = logging.getLogger("servicegate.uplink")

RENEW_AT = 2 / 3  # of the certificate's lifetime
KEEP_HANDLED_IDS = 1000
CONNECT_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class InboxMessage:
    id: str
    type: str
    body: dict[str, Any]


Handler = Callable[[InboxMessage], None]


@dataclass
class LinkState:
    """What `servicegate status` shows of the link."""

    portal_url: str = ""
    device_id: str = ""
    state: str = "not enrolled"  # not enrolled | refused | connecting | connected | unreachable
    error: str = ""
    last_contact: float | None = None
    certificate_not_after: str = ""
    certificate_renew_at: str = ""  # when the agent asks for a new certificate (two thirds of its lifetime)
    handled: int = 0
    renewals: int = 0

    def note_certificate(self, certificate: x509.Certificate) -> None:
        start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        self.certificate_not_after = end.isoformat()
        self.certificate_renew_at = (start + RENEW_AT * (end - start)).isoformat(timespec="seconds")

    def to_dict(self) -> dict[str, Any]:
        return {"portal_url": self.portal_url, "device_id": self.device_id, "state": self.state, "error": self.error,
                "last_contact": self.last_contact, "certificate_not_after": self.certificate_not_after,
                "certificate_renew_at": self.certificate_renew_at, "messages_handled": self.handled,
                "renewals": self.renewals}


def connect(config: Config) -> tuple[Uplink | None, LinkState]:
    """The link for this configuration, or None with the reason in the state (not enrolled; refused)."""
    state_dir = config.paths.state_dir
    try:
        enrollment = Enrollment.load(state_dir)
    except (ServiceGateError, OSError) as exc:
        return None, LinkState(state="refused", error=str(exc))
    if enrollment is None:
        return None, LinkState(error="this device is not enrolled: run `servicegate enroll`")
    state = LinkState(portal_url=enrollment.portal_url, device_id=enrollment.device_id, state="connecting")
    try:
        certificate = x509.load_pem_x509_certificate(enrollment.cert_file.read_bytes())
        check_binding(certificate, enrollment.device_id, config.portal)
    except (OSError, ValueError, ServiceGateError) as exc:
        state.state, state.error = "refused", str(exc)
        log.error("not connecting to the portal: %s", exc)
        return None, state
    state.note_certificate(certificate)
    session = pinned_session(enrollment.ca_file, client_cert=(enrollment.cert_file, enrollment.key_file),
                             proxy_url=config.portal.proxy_url)
    return Uplink(config, enrollment, session, state), state


class Uplink:
    def __init__(self, config: Config, enrollment: Enrollment, session: requests.Session, state: LinkState, *,
                 clock: Callable[[], float] = time.time, rng: Callable[[], float] = random.random) -> None:
        self.config = config
        self.enrollment = enrollment
        self.session = session
        self.state = state
        self.handler: Handler = lambda message: None
        self.stop_event = threading.Event()
        self._clock = clock
        self._rng = rng
        self._handled_file = config.paths.state_dir / "portal" / "inbox-handled.json"
        self._handled: list[str] = _load_ids(self._handled_file)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.enrollment.portal_url.rstrip("/")

    def start(self, handler: Handler) -> None:
        self.handler = handler
        self._thread = threading.Thread(target=self._run, name="portal-inbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.session.close()

    def _run(self) -> None:
        failures = 0
        first = True  # the first poll does not wait: `status` (and site IT's doctor) learn at once that the link works
        while not self.stop_event.is_set():
            try:
                self.renew_if_due()
                self.poll_once(0 if first else None)
                first, failures = False, 0
            except Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - whatever goes wrong, the link waits and tries again
                failures += 1
                if not isinstance(exc, LinkError):
                    log.exception("portal link: unexpected error")
                if self.state.state != "refused":
                    self.state.state = "unreachable"
                self.state.error = str(exc)
                log.warning("portal: %s", exc)
                self.stop_event.wait(full_jitter(failures, self._rng))

    def poll_once(self, wait_s: float | None = None) -> int:
        """One long poll: handle and acknowledge what came. Returns how many messages came."""
        wait = self.config.portal.inbox_wait_s if wait_s is None else wait_s
        answer = self.call("GET", "/v1/inbox", params={"wait": wait},
                            read_timeout=wait + self.config.portal.request_timeout_s)
        messages = answer.get("messages")
        if not isinstance(messages, list):
            raise LinkError("the portal's inbox answer has no list of messages; is the portal URL right?")
        done: list[str] = []
        for raw in messages:
            message = _message(raw)
            if message is None:
                log.error("portal: ignoring a malformed inbox message (no id, type or body): %.200r", raw)
                continue
            if message.id not in self._handled:
                self._handle(message)
            done.append(message.id)
        if done:
            self.call("POST", "/v1/inbox/ack", json={"ids": done})
        return len(messages)

    def heads(self) -> list[dict[str, Any]]:
        """The audit checkpoint heads the portal holds for this device (for `audit verify --against-portal`)."""
        try:
            heads = self.call("GET", "/v1/audit/heads").get("heads")
        except (LinkError, Stopped) as exc:
            raise PortalError(f"cannot get the checkpoint heads from the portal: {exc}") from None
        if not isinstance(heads, list) or not all(isinstance(h, dict) for h in heads):
            raise PortalError("the portal's answer holds no list of checkpoint heads")
        return heads

    def claim(self, session_id: str) -> dict[str, Any]:
        """The details of the session with this ID, claimed for this device (PortalError says why not)."""
        try:
            return self.call("POST", "/v1/sessions/claim", json={"session_id": session_id})
        except LinkError as exc:
            if exc.status in (404, 429):
                raise PortalError(exc.detail) from None
            raise PortalError(f"cannot claim the session: {exc}") from None
        except Stopped:
            raise PortalError("cannot claim the session: the agent is stopping") from None

    def request_service(self, request: dict[str, Any]) -> str | None:
        """Send a service request (`POST /v1/service-requests`): the case number the portal gives it, the same for
        the same `request_id` (so sending it again after a lost answer opens no second case). None when the portal
        cannot be reached now: send it again later. PortalError when the portal refused it: that would not help."""
        try:
            answer = self.call("POST", "/v1/service-requests", json=request)
        except LinkError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
                raise PortalError(exc.detail) from None
            log.warning("portal: service request %s not sent now: %s", request.get("request_id"), exc)
            return None
        except Stopped:
            return None
        case_id = answer.get("case_id")
        if not isinstance(case_id, str) or not case_id or len(case_id) > MAX_CASE_ID or not case_id.isprintable():
            log.error("portal: the answer to service request %s holds no case number: %.200r",
                      request.get("request_id"), answer)
            return None
        return case_id

    def _handle(self, message: InboxMessage) -> None:
        try:
            self.handler(message)
        except Exception as exc:  # noqa: BLE001 - a message that cannot be done must not block the ones after it
            log.error("portal message %s (%s) could not be handled: %s", message.id, message.type, exc)
        self._handled = (self._handled + [message.id])[-KEEP_HANDLED_IDS:]
        write_json(self._handled_file, self._handled)
        self.state.handled += 1

    def renew_if_due(self) -> bool:
        """Renew the certificate when two thirds of its lifetime have passed."""
        try:
            certificate = x509.load_pem_x509_certificate(self.enrollment.cert_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise LinkError(f"cannot read the device certificate: {exc}; enroll again") from None
        start, end = certificate.not_valid_before_utc.timestamp(), certificate.not_valid_after_utc.timestamp()
        if self._clock() < start + RENEW_AT * (end - start):
            return False
        key, csr = new_key_and_csr(self.enrollment.device_id, self.config.portal)
        answer = self.call("POST", "/v1/renew", json={"csr": csr})
        try:
            renewed = replace_credentials(self.enrollment, key, str(answer.get("certificate", "")),
                                          self.config.portal)
        except ServiceGateError as exc:
            raise LinkError(f"certificate renewal failed: {exc}") from None
        self.state.note_certificate(renewed)
        self.state.renewals += 1
        log.info("portal: device certificate renewed, valid until %s", self.state.certificate_not_after)
        return True

    def call(self, method: str, path: str, *, read_timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        timeout = (CONNECT_TIMEOUT_S, read_timeout or self.config.portal.request_timeout_s)
        url = self.url + path
        try:
            status, body = call_until_stopped(lambda: _request(self.session, method, url, timeout, kwargs),
                                              self.stop_event)
        except requests.exceptions.SSLError as exc:
            raise LinkError(f"TLS with the portal failed ({tls_reason(exc)}): its certificate must come from the "
                            "vendor CA this device was enrolled with, be valid now and name its address") from None
        except requests.RequestException as exc:
            raise LinkError(f"cannot reach the portal at {url}: {type(exc).__name__}: {short(exc)}") from None
        except OSError as exc:  # the certificate files, e.g. for an instant during a renewal's swap
            raise LinkError(f"cannot use the device's certificate files: {exc}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status in (401, 403):
            self.state.state = "refused"
            raise LinkError(f"the portal refused this device ({status}: {_detail(answer, body)}); enroll it again "
                            "with `servicegate enroll`")
        if status != 200:
            raise LinkError(f"{method} {url} answered {status}: {_detail(answer, body)}", status=status,
                            detail=_detail(answer, body))
        if not isinstance(answer, dict):
            raise LinkError(f"{method} {url} answered with something that is not a JSON object")
        self.state.state, self.state.error, self.state.last_contact = "connected", "", self._clock()
        return answer


def _request(session: requests.Session, method: str, url: str, timeout: tuple[float, float],
             kwargs: dict[str, Any]) -> tuple[int, bytes]:
    """Status and body, the body read up to MAX_ANSWER_BYTES: a portal cannot fill the agent's memory."""
    with session.request(method, url, timeout=timeout, stream=True, **kwargs) as response:
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise LinkError(f"{method} {url}: the answer is larger than {MAX_ANSWER_BYTES} bytes; refused")
        return response.status_code, bytes(body)


class LinkError(Exception):
    """A call to the portal failed; the message says how. The inbox loop waits and tries again. `status` and
    `detail`: the portal's answer, when it gave one."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def _message(raw: Any) -> InboxMessage | None:
    if not isinstance(raw, dict):
        return None
    ident, kind, body = raw.get("id"), raw.get("type"), raw.get("body", {})
    if not isinstance(ident, str) or not ident or not isinstance(kind, str) or not isinstance(body, dict):
        return None
    return InboxMessage(ident, kind, body)


def _load_ids(path: Path) -> list[str]:
    try:
        ids = read_json(path)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.error("%s cannot be read (%s); messages handled before may be handled again", path, exc)
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def _detail(answer: Any, body: bytes) -> str:
    detail = answer.get("detail") if isinstance(answer, dict) else None
    return short(detail if isinstance(detail, str) else body.decode(errors="replace") or "no explanation")
