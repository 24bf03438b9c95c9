"""E-mail notices of remote sessions: the staff named in `[notify]` learn of every connection and disconnection.

Discussion: the agent's event loop must never wait for a mail server, and a relay that is down must not lose a
notice. So `Notifier.session_changed` does only local work: it composes the whole message (subject, text,
recipients, Message-ID) from the session as published, puts it as one record into an outbox of its own (a
SQLite transaction on the local disk, telemetry.outbox) and wakes the sender thread. The thread talks to the
relay (STARTTLS with the relay's certificate verified, then the optional login) and acknowledges each message
the relay took. What the relay did not take stays in the outbox, survives a restart of the agent and is tried
again every `retry_s`. Delivery is at least once: when the relay took a message but the connection broke before
the acknowledgement, it is sent again with the same Message-ID, so that mail systems can tell it is a repeat.

Nothing here reads a patient's data: a session carries who connected, from which company, at which level and
why, and the engineer's summary of the work.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import smtplib
import socket
import ssl
import textwrap
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from agent.clock import parse_utc
from agent.config import NotifyConfig
from agent.connection import short
from agent.protocol import AccessLevel, EndReason
from telemetry.outbox import Outbox, OutboxError, Record, Status

log = logging.getLogger("servicegate.notify")

KIND = "mail_notice"  # the outbox record kind (telemetry.outbox.PRIORITIES: never shed)
CONNECTED = "connected"
DISCONNECTED = "disconnected"
_REMEMBERED = 1000  # (session, event) pairs remembered so that a session republished unchanged is noticed once
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")  # line breaks and other control characters: never in a header


def notice_for(session: dict[str, Any]) -> str | None:
    """The notice a published session calls for: "connected" when it is active, "disconnected" when it ended
    after being active, None otherwise (a session that ended before it became active connected nobody)."""
    state = session.get("state")
    if state == "active":
        return CONNECTED
    if state == "ended" and session.get("activated_at") is not None:
        return DISCONNECTED
    return None


class _NoticePolicy(EmailPolicy):
    """The standard policy, but the Subject is folded by the older `email.header.Header`.

    The default folder of Python 3.11 mishandles encoded words at a fold (a doubled space, an empty encoded word,
    two encoded words run together: python/cpython#144156), and the subject carries names in any script. Header
    encodes the whole text as RFC 2047 words of at most 75 characters and folds between them."""

    def fold(self, name: str, value: str) -> str:
        if name.lower() != "subject":
            return str(super().fold(name, value))
        return f"{name}: {Header(str(value), header_name=name).encode(linesep=self.linesep)}{self.linesep}"

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() != "subject":
            return super().fold_binary(name, value)
        return self.fold(name, value).encode("ascii")


_POLICY = _NoticePolicy()


class _Relay(smtplib.SMTP):
    """A connection made without connecting, so that stop() can reach it before the relay has said a word.

    smtplib checks the relay's certificate against the host given to its constructor (which would also connect
    at once), kept in `_host`; it is set here to the host `connect` is then called with."""

    def __init__(self, host: str, timeout_s: float) -> None:
        super().__init__(timeout=timeout_s)
        self._host = host


class _Failed(Exception):
    """One round of sending failed; the message says what failed and what to check."""


class Notifier:
    """Queues a notice for each connection and disconnection, and sends them from a thread of its own.

    `outbox_path` is the notices' own outbox (the daemon uses `<state_dir>/mail-outbox.sqlite`); it is opened only
    when `[notify] smtp_host` is set. Nothing here raises into the caller: problems are logged.
    """

    def __init__(self, config: NotifyConfig, outbox_path: Path, *, device_name: str | None = None,
                 clock: Callable[[], float] = time.time, retry_s: float = 60) -> None:
        self.config = config
        self.device_name = device_name or socket.gethostname()
        self.retry_s = retry_s
        self._clock = clock
        self._recipients = [*config.technical_staff, *config.clinical_staff]
        self._noticed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._round = threading.Lock()  # one round of sending at a time (the thread, or a direct call)
        self._current_lock = threading.Lock()
        self._current: smtplib.SMTP | None = None  # the open connection, so that stop() can cut it
        self._thread: threading.Thread | None = None
        self._sender: str | None = config.sender or None  # the default needs a DNS lookup: made in the thread
        self._last_problem: str | None = None
        self._outbox: Outbox | None = None
        if not config.smtp_host:
            return
        try:
            self._outbox = Outbox(outbox_path, clock=clock)
        except OutboxError as exc:
            log.error("e-mail notices are off: %s", exc)
            return
        if not self._recipients:
            log.warning("[notify] smtp_host is set but technical_staff and clinical_staff are empty: no e-mail "
                        "notices of remote sessions are sent. Add the staff's addresses to agent.toml.")

    @property
    def enabled(self) -> bool:
        """Notices are queued: a relay is configured (and its outbox opened), and somebody is to be told."""
        return self._outbox is not None and bool(self._recipients)

    # ---- the caller's side: never blocks on the network, never raises ---------------------------------

    def session_changed(self, session: dict[str, Any]) -> None:
        """A session as the agent publishes it (`Session.to_dict()`): queue a notice if it calls for one."""
        try:
            event = notice_for(session)
            if event is None or not self.enabled or self._outbox is None:
                return
            key = (str(session["id"]), event)
            if key in self._noticed:  # republished (e.g. narrowed) while still active: told once already
                return
            self._outbox.put(KIND, self._compose(session, event))
            self._noticed[key] = None
            while len(self._noticed) > _REMEMBERED:
                self._noticed.popitem(last=False)
            self._wake.set()
        except Exception:  # a notice must never break a session
            log.exception("could not queue the e-mail notice of session %s", session.get("id"))

    # ---- the sender thread -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender thread: it sends at once when woken, and otherwise every `retry_s` tries again what
        still waits. Does nothing when no relay is configured."""
        if self._outbox is None or self._thread is not None:
            return
        self._stopping.clear()
        self._wake.set()  # what a previous run left waiting goes first
        self._thread = threading.Thread(target=self._run, name="servicegate-notify", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 2.0) -> None:
        """End the sender thread promptly: the message being sent gets `grace_s` to finish (a relay answers in
        milliseconds); a conversation with a relay that hangs is then cut, and its notice kept for the next start."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join(grace_s)
        if not thread.is_alive():
            return
        with self._current_lock:
            current = self._current
        if current is not None and current.sock is not None:
            with contextlib.suppress(OSError):  # already closed
                current.sock.shutdown(socket.SHUT_RDWR)
        thread.join(self.config.timeout_s + 5)  # a connect() still under way ends at timeout_s
        if thread.is_alive():
            log.warning("the e-mail notice sender did not stop within %d s; it ends with the agent",
                        self.config.timeout_s + 5)

    def close(self) -> None:
        """Stop, and close the outbox."""
        self.stop()
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> Status | None:
        """The notices' outbox: how many wait, the last error. None when no relay is configured."""
        return self._outbox.status() if self._outbox is not None else None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.send_pending()
            except Exception:  # the thread must outlive any surprise; the notices stay in the outbox
                log.exception("the e-mail notice sender failed; it tries again in %s s", self.retry_s)
            self._wake.wait(self.retry_s)

    # ---- sending -------------------------------------------------------------------------------------------

    def send_pending(self) -> int:
        """Send what waits, oldest first, over one connection; return how many the relay took. On a failure the
        rest stays for the next round, and a warning says what failed and what to check."""
        outbox = self._outbox
        if outbox is None:
            return 0
        with self._round:
            if not outbox.batch(max_records=1):
                return 0
            sent = 0
            smtp = _Relay(self.config.smtp_host, self.config.timeout_s)  # stop() can cut it from now on
            with self._current_lock:
                self._current = smtp
            try:
                self._open(smtp)
                while not self._stopping.is_set():
                    records = outbox.batch(max_records=100)
                    if not records:
                        break
                    for record in records:
                        if self._stopping.is_set():
                            break
                        if self._send(outbox, smtp, record):
                            sent += 1
                with contextlib.suppress(smtplib.SMTPException, OSError):  # what was sent, the relay took already
                    smtp.quit()
            except _Failed as exc:
                self._failed(str(exc))
                return sent
            finally:
                with self._current_lock:
                    self._current = None
                smtp.close()
            if self._last_problem is not None:
                log.info("e-mail notices are sent again (%d just now)", sent)
                self._last_problem = None
            return sent

    def _failed(self, problem: str) -> None:
        waiting = self._outbox.status().records if self._outbox is not None else 0
        if self._stopping.is_set():
            log.info("stopped while sending e-mail notices; %d kept for the next start", waiting)
            return
        message = f"e-mail notice not sent ({waiting} waiting, kept and tried again in {self.retry_s:g} s): {problem}"
        if problem != self._last_problem:  # one warning per cause, not one a minute while the relay is down
            log.warning("%s", message)
        else:
            log.debug("%s", message)
        self._last_problem = problem
        if self._outbox is not None:
            self._outbox.note_error(problem)

    def _open(self, smtp: smtplib.SMTP) -> None:
        """Connect, STARTTLS (the relay's certificate verified), log in: or raise _Failed saying why."""
        cfg = self.config
        context = self._tls_context() if cfg.starttls else None
        password = self._password() if cfg.username else None
        step = "connecting"
        try:
            if self._stopping.is_set():
                raise _Failed("stopping")
            smtp.connect(cfg.smtp_host, cfg.smtp_port)
            step = "greeting it (EHLO)"
            smtp.ehlo()
            if context is not None:
                step = "starting TLS (STARTTLS)"
                smtp.starttls(context=context)
                smtp.ehlo()
            if password is not None:
                step = "logging in"
                smtp.login(cfg.username, password)
        except (smtplib.SMTPException, OSError) as exc:
            raise _Failed(f"the SMTP relay {cfg.smtp_host}:{cfg.smtp_port}: {self._explain(exc, step)}") from exc

    def _explain(self, exc: BaseException, step: str) -> str:
        cfg = self.config
        trust = f"[notify] ca_file ({cfg.ca_file})" if cfg.ca_file != Path("") else "the system's trust store"
        if isinstance(exc, smtplib.SMTPNotSupportedError) and step.startswith("starting TLS"):
            return ("the relay does not offer STARTTLS; nothing was sent, as notices never go in clear. Enable "
                    "STARTTLS on the relay, or check [notify] smtp_port (587 is mail submission with STARTTLS).")
        if isinstance(exc, smtplib.SMTPNotSupportedError) and step == "logging in":
            return ("the relay offers no login (AUTH). Check [notify] username: leave it empty if the relay "
                    "takes this device's mail without one.")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return (f"the relay refused the login of user {cfg.username!r} ({_reply(exc)}). Check [notify] "
                    f"username and the password in {cfg.password_file}.")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"the relay closed the connection while {step} ({short(exc)}). Check the relay's log."
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"the relay answered {_reply(exc)} while {step}. Check the relay's log and settings."
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (f"the relay's certificate is not trusted ({exc.verify_message}); nothing was sent. Check that "
                    f"{trust} holds the CA that signed it, and that smtp_host is a name in the certificate.")
        if isinstance(exc, ssl.SSLError):
            return f"TLS with the relay failed ({short(exc)}); nothing was sent. Check the relay's TLS settings."
        if isinstance(exc, TimeoutError):
            return (f"no answer within {cfg.timeout_s} s while {step}. Check that this is the SMTP relay and "
                    "that it is up ([notify] smtp_host, smtp_port, timeout_s).")
        if isinstance(exc, OSError) and step == "connecting":
            return (f"cannot connect ({exc.strerror or short(exc)}). Check [notify] smtp_host and smtp_port, that "
                    "the relay runs, and that this device may reach it through the firewall.")
        return f"{short(exc)} while {step}."

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.config.ca_file
        try:
            if ca_file == Path(""):
                return ssl.create_default_context()
            return ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise _Failed(f"cannot load [notify] ca_file {ca_file} ({short(exc)}). Check that it exists, holds "
                          "the relay's CA certificate in PEM and may be read by the agent.") from exc

    def _password(self) -> str:
        path = self.config.password_file
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise _Failed(f"[notify] password_file {path} may be read by other users (mode {mode:o}). Run "
                              f"`chmod 600 {path}`, and consider changing the password at the relay.")
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else short(exc)
            raise _Failed(f"cannot read [notify] password_file {path} ({why}). Check that it exists and that the "
                          "agent's user may read it.") from exc
        if not password:
            raise _Failed(f"[notify] password_file {path} is empty. Write the relay password into it.")
        return password

    def _send(self, outbox: Outbox, smtp: smtplib.SMTP, record: Record) -> bool:
        """Send one record and acknowledge it; False for a record that is no notice (set aside, not sent)."""
        body = record.body
        sender = self._from_address()
        try:
            if record.kind != KIND:  # the outbox's own reports (a quarantine): nobody reads them here
                outbox.ack([record.sequence])
                return False
            recipients = [str(address) for address in body["to"]]
            message = EmailMessage(policy=_POLICY)
            message["From"] = sender
            message["To"] = ", ".join(recipients)
            message["Subject"] = body["subject"]
            message["Date"] = body["date"]
            message["Message-ID"] = body["message_id"]
            message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a machine
            message.set_content(body["text"], cte="quoted-printable")  # 7-bit safe for any relay
        except (KeyError, TypeError, ValueError) as exc:  # one damaged record must not hold back all that follow
            log.error("e-mail notice %d cannot be made into a message (%s); it is set aside in %s",
                      record.sequence, short(exc), outbox.path)
            outbox.quarantine([record.sequence], f"not a valid notice: {short(exc)}")
            return False
        try:
            refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
        except (smtplib.SMTPException, OSError) as exc:
            relay = f"the SMTP relay {self.config.smtp_host}:{self.config.smtp_port}"
            if isinstance(exc, smtplib.SMTPRecipientsRefused):
                raise _Failed(f"{relay} refused every recipient ({_refusals(exc.recipients)}). Check [notify] "
                              "technical_staff and clinical_staff, and that the relay takes mail from this "
                              "device for them.") from exc
            if isinstance(exc, smtplib.SMTPSenderRefused):
                raise _Failed(f"{relay} refused the sender {sender} ({_reply(exc)}). Check [notify] sender.") from exc
            raise _Failed(f"{relay}: {self._explain(exc, 'sending a notice')}") from exc
        outbox.ack([record.sequence])
        if refused:
            log.warning("the SMTP relay refused some recipients of the notice of session %s: %s. Check [notify] "
                        "technical_staff and clinical_staff.", body.get("session_id"), _refusals(refused))
        return True

    def _from_address(self) -> str:
        if self._sender is None:
            self._sender = f"servicegate@{socket.getfqdn()}"
        return self._sender

    # ---- the message -----------------------------------------------------------------------------------------

    def _compose(self, session: dict[str, Any], event: str) -> dict[str, Any]:
        """Everything the message needs, fixed now: nothing is looked up when it is sent."""
        engineer = session.get("engineer") or {}
        name = str(engineer.get("name") or "an unnamed engineer")
        company = str(engineer.get("company") or "")
        who = f"{name} ({company})" if company else name
        session_id = str(session["id"])
        level = str(session.get("effective_level") or session.get("requested_level") or "unknown")
        connected = _when(session.get("activated_at") or session.get("state_since"))
        if event == CONNECTED:
            subject = f"ServiceGate: remote service session {session_id} connected — {who}"
            opening = f"A remote service engineer has connected to {self.device_name}."
        else:
            end = str(session.get("end_reason") or "unknown")
            subject = f"ServiceGate: remote service session {session_id} ended ({end}) — {who}"
            opening = f"A remote service session on {self.device_name} has ended."
        level_text = level
        if level == AccessLevel.FULL.value and event == CONNECTED:
            level_text += " (examinations are not possible while the session is active)"
        rows = [("Device", self.device_name), ("Session ID", session_id),
                ("Engineer", f"{name} (ID {engineer.get('id') or 'unknown'})"), ("Company", company or "not given"),
                ("Level", level_text), ("Kind", str(session.get("kind") or "unknown")),
                ("Reason", str(session.get("reason") or "not given")), ("Connected", _shown(connected))]
        closing = [_wrap("The technologist can end the session at any time at the scanner's console (kill switch).")]
        if event == DISCONNECTED:
            ended = _when(session.get("state_since"))
            end = str(session.get("end_reason") or "")
            try:
                meaning = f"{end}: {EndReason(end).meaning}"
            except ValueError:
                meaning = end or "unknown"
            rows += [("Ended", _shown(ended)), ("Duration", _duration(connected, ended)), ("End reason", meaning)]
            summary = str(session.get("end_text") or "").strip()
            closing = ["The engineer's summary:",
                       *([_wrap(line, indent="  ") for line in summary.splitlines()] or ["  none given"])]
        width = max(len(label) for label, _ in rows) + 2
        text = "\n".join([opening, "", *(f"{label + ':':<{width}}{value}" for label, value in rows), "",
                          *closing, "",
                          _wrap(f"This notice comes from ServiceGate on {self.device_name}, because your address is in "
                                "the [notify] section of its configuration. It holds no patient data; the device's "
                                "audit log keeps the full record of the session."), ""])
        now = datetime.fromtimestamp(self._clock(), UTC)
        host = re.sub(r"[^A-Za-z0-9.-]", "-", self.device_name).strip(".-") or "servicegate.invalid"
        return {"event": event, "session_id": session_id, "to": list(self._recipients),
                "subject": _CONTROL.sub(" ", subject), "text": text, "date": format_datetime(now),
                "message_id": f"<{event}.{re.sub(r'[^A-Za-z0-9-]', '-', session_id)}.{secrets.token_hex(8)}"
                              f"@{host}>"}


def _wrap(line: str, indent: str = "") -> str:
    """A paragraph of plain text at 76 columns, for any mail reader."""
    return textwrap.fill(line, 76, initial_indent=indent, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def _when(text: object) -> datetime | None:
    try:
        return parse_utc(str(text)) if text else None
    except ValueError:
        return None


def _shown(when: datetime | None) -> str:
    """Local time first (what the staff's clocks show), then UTC."""
    if when is None:
        return "unknown"
    local = when.astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or local.strftime('%z')} ({when:%Y-%m-%dT%H:%M:%S}Z UTC)"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "unknown"
    minutes = max(0, round((end - start).total_seconds() / 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {short(text)}"


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{address}: {code} {short(reply.decode('utf-8', 'replace'))}"
                     for address, (code, reply) in refused.items())
