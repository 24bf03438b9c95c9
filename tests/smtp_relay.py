"""A real SMTP relay for the tests (aiosmtpd in a thread on 127.0.0.1): STARTTLS with a certificate from a CA made
in the test, optional login, and an inbox that keeps every message it took."""

from __future__ import annotations

import email
import socket
import ssl
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from aiosmtpd.smtp import Session as SmtpSession

from tests.pki import make_ca

USER, PASSWORD = "ct-scanner-1", "correct horse battery staple"


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    over_tls: bool
    login: str | None


class Inbox:
    """The relay's handler: keeps every message it took, and every MAIL command it saw."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.mail_commands = 0
        self._changed = threading.Condition()

    async def handle_MAIL(self, server: SmtpServer, session: SmtpSession, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        with self._changed:
            self.mail_commands += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SmtpServer, session: SmtpSession, envelope: Envelope) -> str:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self._changed:
            self.mails.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), message,
                                   session.ssl is not None, login))
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int) -> list[Mail]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.mails) >= count, timeout=20), \
                f"{len(self.mails)} messages arrived, not {count}"
            return list(self.mails)


def authenticator(server: SmtpServer, session: SmtpSession, envelope: Envelope, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == \
        (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)  # handled: aiosmtpd answers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_tls(directory: Path, *, ca_name: str = "ServiceGate test relay CA") -> tuple[ssl.SSLContext, Path]:
    """The relay's TLS context, with a certificate for 127.0.0.1 from a new CA; and that CA's certificate."""
    ca = make_ca(ca_name)
    cert, key = ca.server(directory, "relay")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, ca.write(directory / "ca.pem")


def start_relay(inbox: Inbox, port: int, tls: ssl.SSLContext | None, *, require_starttls: bool = True,
                auth: bool = False) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=tls,
                            require_starttls=require_starttls and tls is not None,
                            authenticator=authenticator if auth else None, auth_required=auth,
                            auth_require_tls=True)
    controller.start()
    return controller
