"""E-mail notices of remote sessions, against real SMTP servers (aiosmtpd) on 127.0.0.1 with a CA made here.

The relay is a real server in a thread: STARTTLS with a certificate from the test's CA, login, a relay that is
down, one that refuses, one whose certificate comes from another CA, one that accepts and never answers.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config import NotifyConfig, from_mapping
from agent.errors import ConfigError
from agent.notify import Notifier, notice_for
from agent.protocol import AccessLevel, EndReason, SessionKind, SessionState
from agent.session import Engineer, Session
from tests.smtp_relay import PASSWORD, USER, Inbox, free_port, server_tls, start_relay

TECHNICAL = ("biomed@hospital.example", "it-duty@hospital.example")
CLINICAL = ("lead-tech.ct@hospital.example",)
START = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)




@pytest.fixture
def pki(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    return server_tls(tmp_path / "relay-pki")


@pytest.fixture
def relay(pki: tuple[ssl.SSLContext, Path]) -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = start_relay(inbox, port, pki[0])
    yield inbox, port
    controller.stop()


# ---- the agent's side ------------------------------------------------------------------------------------------


def notify_config(port: int, ca_file: Path | None, **changes: Any) -> NotifyConfig:
    """Through the real loader, so the tests use what agent.toml would give."""
    table: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": port, "technical_staff": list(TECHNICAL),
                             "clinical_staff": list(CLINICAL), "timeout_s": 10}
    if ca_file is not None:
        table["ca_file"] = str(ca_file)
    table.update(changes)
    return from_mapping({"notify": table}).notify


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    made: list[Notifier] = []
    yield made
    for notifier in made:
        notifier.close()


def make_notifier(made: list[Notifier], config: NotifyConfig, tmp_path: Path, **kwargs: Any) -> Notifier:
    notifier = Notifier(config, tmp_path / "state" / "mail-outbox.sqlite", device_name="ct-scanner-1", **kwargs)
    made.append(notifier)
    return notifier


def waiting(notifier: Notifier) -> int:
    status = notifier.status()
    assert status is not None
    return status.records


def session(state: SessionState = SessionState.ACTIVE, *, session_id: str = "12345678") -> Session:
    engineer = Engineer("eng-0042", "Dana Scully", "Acme Medical Systems GmbH")
    requested = Session(id=session_id, kind=SessionKind.SERVICE, engineer=engineer,
                        reason="Tube cooling pump reports low flow", requested_level=AccessLevel.FULL,
                        state=SessionState.AUTHENTICATING, created_at=START, state_since=START,
                        effective_level=AccessLevel.FULL)
    if state is SessionState.AUTHENTICATING:
        return requested
    return requested.move(SessionState.ACTIVE, START + timedelta(minutes=2), activated_at=START + timedelta(minutes=2))


def ended(active: Session, reason: EndReason = EndReason.COMPLETED,
          text: str = "Replaced the cooling pump; flow 4.1 l/min at 40 °C.") -> Session:
    return active.end(reason, START + timedelta(minutes=75), text)


class Signal(logging.Handler):
    """Sets an event when the notifier logs a warning: what a test waits for instead of sleeping."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warned = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.warned.set()


# ---- what calls for a notice -----------------------------------------------------------------------------------


def test_which_sessions_call_for_a_notice() -> None:
    active = session()
    assert notice_for(active.to_dict()) == "connected"
    assert notice_for(ended(active).to_dict()) == "disconnected"
    waiting_one = session(SessionState.AUTHENTICATING)
    assert notice_for(waiting_one.to_dict()) is None
    assert notice_for(waiting_one.end(EndReason.AUTH_FAILED, START).to_dict()) is None  # never connected


# ---- the notices arrive ----------------------------------------------------------------------------------------


def test_connected_and_disconnected_notices_reach_both_lists_over_tls(
        tmp_path: Path, pki: tuple[ssl.SSLContext, Path], relay: tuple[Inbox, int],
        notifiers: list[Notifier]) -> None:
    inbox, port = relay
    notifier = make_notifier(notifiers, notify_config(port, pki[1]), tmp_path)
    notifier.start()
    active = session()
    notifier.session_changed(active.to_dict())
    first = inbox.wait_for(1)[0]
    notifier.session_changed(active.to_dict())  # published again while active (e.g. narrowed): told once only
    notifier.session_changed(ended(active).to_dict())
    second = inbox.wait_for(2)[1]
    notifier.stop()

    everyone = [*TECHNICAL, *CLINICAL]
    for mail in (first, second):
        assert mail.over_tls
        assert mail.recipients == everyone
        assert mail.sender == f"servicegate@{socket.getfqdn()}"
        assert [a.strip() for a in str(mail.message["To"]).split(",")] == everyone
        assert mail.message["Message-ID"]
        assert mail.message["Date"]
        assert mail.message["Auto-Submitted"] == "auto-generated"

    assert first.message["Subject"] == ("ServiceGate: remote service session 12345678 connected — Dana Scully "
                                        "(Acme Medical Systems GmbH)")
    text = first.message.get_content()
    for fact in ("ct-scanner-1", "12345678", "Dana Scully (ID eng-0042)", "Acme Medical Systems GmbH",
                 "full (examinations are not possible", "service", "Tube cooling pump reports low flow",
                 "2026-03-02T09:17:00Z UTC", "kill switch"):
        assert fact in text, f"{fact!r} is not in the connection notice:\n{text}"

    assert second.message["Subject"] == ("ServiceGate: remote service session 12345678 ended (completed) — "
                                         "Dana Scully (Acme Medical Systems GmbH)")
    text = second.message.get_content()
    for fact in ("Dana Scully", "Acme Medical Systems GmbH", "full", "Tube cooling pump reports low flow",
                 f"completed: {EndReason.COMPLETED.meaning}", "Replaced the cooling pump; flow 4.1 l/min at 40 °C.",
                 "2026-03-02T09:17:00Z UTC", "2026-03-02T10:30:00Z UTC", "1 h 13 min"):
        assert fact in text, f"{fact!r} is not in the disconnection notice:\n{text}"
    assert first.message["Message-ID"] != second.message["Message-ID"]
    assert waiting(notifier) == 0


def test_no_notice_for_a_session_that_never_became_active(tmp_path: Path, pki: tuple[ssl.SSLContext, Path],
                                                          relay: tuple[Inbox, int],
                                                          notifiers: list[Notifier]) -> None:
    inbox, port = relay
    notifier = make_notifier(notifiers, notify_config(port, pki[1]), tmp_path)
    authenticating = session(SessionState.AUTHENTICATING)
    notifier.session_changed(authenticating.to_dict())
    notifier.session_changed(authenticating.end(EndReason.DECLINED, START).to_dict())
    assert waiting(notifier) == 0
    assert notifier.send_pending() == 0
    assert inbox.mail_commands == 0


def test_without_a_relay_nothing_is_queued_and_no_file_is_made(tmp_path: Path, notifiers: list[Notifier]) -> None:
    notifier = make_notifier(notifiers, from_mapping({}).notify, tmp_path)
    notifier.start()
    notifier.session_changed(session().to_dict())
    assert not notifier.enabled
    assert not notifier.running
    assert notifier.send_pending() == 0
    assert notifier.status() is None
    assert not (tmp_path / "state").exists()


def test_a_relay_on_this_machine_may_be_used_without_starttls(tmp_path: Path, notifiers: list[Notifier]) -> None:
    inbox, port = Inbox(), free_port()
    controller = start_relay(inbox, port, None)
    try:
        notifier = make_notifier(notifiers, notify_config(port, None, starttls=False,
                                                          sender="servicegate@ct-scanner-1.hospital.example"),
                                 tmp_path)
        notifier.session_changed(session().to_dict())
        assert notifier.send_pending() == 1
    finally:
        controller.stop()
    (mail,) = inbox.mails
    assert mail.sender == "servicegate@ct-scanner-1.hospital.example"
    assert not mail.over_tls


# ---- failures: kept, logged, sent later ------------------------------------------------------------------------


def test_relay_down_nothing_is_lost_and_it_is_sent_once_the_relay_is_up(
        tmp_path: Path, pki: tuple[ssl.SSLContext, Path], notifiers: list[Notifier],
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there yet
    config = notify_config(port, pki[1])
    first = make_notifier(notifiers, config, tmp_path)
    active = session()
    first.session_changed(active.to_dict())
    first.session_changed(ended(active).to_dict())
    with caplog.at_level(logging.WARNING, logger="servicegate.notify"):
        assert first.send_pending() == 0
    assert "cannot connect" in caplog.text
    assert "smtp_host and smtp_port" in caplog.text
    status = first.status()
    assert status is not None
    assert status.records == 2
    assert status.last_error is not None
    assert "cannot connect" in status.last_error
    first.close()  # the agent restarts while the relay is down

    inbox = Inbox()
    controller = start_relay(inbox, port, pki[0])
    try:
        second = make_notifier(notifiers, config, tmp_path)
        assert second.send_pending() == 2
    finally:
        controller.stop()
    assert [m.message["Subject"].split(" — ")[0] for m in inbox.mails] == [
        "ServiceGate: remote service session 12345678 connected",
        "ServiceGate: remote service session 12345678 ended (completed)"]
    status = second.status()
    assert status is not None
    assert status.records == 0
    assert status.last_error is None


def test_the_sender_thread_retries_until_the_relay_is_up(tmp_path: Path, pki: tuple[ssl.SSLContext, Path],
                                                         notifiers: list[Notifier]) -> None:
    port = free_port()
    notifier = make_notifier(notifiers, notify_config(port, pki[1]), tmp_path, retry_s=0.2)
    signal = Signal()
    logging.getLogger("servicegate.notify").addHandler(signal)
    try:
        notifier.start()
        notifier.session_changed(session().to_dict())
        assert signal.warned.wait(20), "the first attempt did not fail as it should"
        assert waiting(notifier) == 1
        inbox = Inbox()
        controller = start_relay(inbox, port, pki[0])
        try:
            (mail,) = inbox.wait_for(1)
        finally:
            notifier.stop()
            controller.stop()
    finally:
        logging.getLogger("servicegate.notify").removeHandler(signal)
    assert "connected" in mail.message["Subject"]
    assert waiting(notifier) == 0


def test_wrong_password_is_refused_the_notice_kept_and_the_cause_logged(
        tmp_path: Path, pki: tuple[ssl.SSLContext, Path], notifiers: list[Notifier],
        caplog: pytest.LogCaptureFixture) -> None:
    inbox, port = Inbox(), free_port()
    controller = start_relay(inbox, port, pki[0], auth=True)
    password_file = tmp_path / "smtp-password"
    password_file.write_text("not the password\n")
    password_file.chmod(0o600)
    try:
        notifier = make_notifier(notifiers, notify_config(port, pki[1], username=USER,
                                                          password_file=str(password_file)), tmp_path)
        notifier.session_changed(session().to_dict())
        with caplog.at_level(logging.WARNING, logger="servicegate.notify"):
            assert notifier.send_pending() == 0
        assert f"refused the login of user {USER!r}" in caplog.text
        assert str(password_file) in caplog.text
        assert waiting(notifier) == 1
        assert inbox.mail_commands == 0

        password_file.write_text(PASSWORD + "\n")
        password_file.chmod(0o644)  # readable by others: not used
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="servicegate.notify"):
            assert notifier.send_pending() == 0
        assert "may be read by other users (mode 644)" in caplog.text
        assert "chmod 600" in caplog.text
        assert waiting(notifier) == 1

        password_file.chmod(0o600)  # read at each sending: fixed without a restart
        assert notifier.send_pending() == 1
    finally:
        controller.stop()
    (mail,) = inbox.mails
    assert mail.login == USER
    assert mail.over_tls
    assert waiting(notifier) == 0


@pytest.mark.parametrize("relay_kind", ["certificate from another CA", "no STARTTLS offered"])
def test_a_relay_that_cannot_be_trusted_gets_nothing_not_even_in_clear(
        tmp_path: Path, pki: tuple[ssl.SSLContext, Path], notifiers: list[Notifier],
        caplog: pytest.LogCaptureFixture, relay_kind: str) -> None:
    inbox, port = Inbox(), free_port()
    if relay_kind == "certificate from another CA":
        tls: ssl.SSLContext | None = server_tls(tmp_path / "other-pki", ca_name="Somebody else's CA")[0]
        expected = "certificate is not trusted"
    else:
        tls, expected = None, "does not offer STARTTLS"
    # The relay would take mail in clear: only the agent's refusal keeps the notice from going out.
    controller = start_relay(inbox, port, tls, require_starttls=False)
    try:
        notifier = make_notifier(notifiers, notify_config(port, pki[1]), tmp_path)
        notifier.session_changed(session().to_dict())
        with caplog.at_level(logging.WARNING, logger="servicegate.notify"):
            assert notifier.send_pending() == 0
    finally:
        controller.stop()
    assert expected in caplog.text
    assert "nothing was sent" in caplog.text
    if tls is not None:
        assert str(pki[1]) in caplog.text  # which CA file to check
    assert inbox.mail_commands == 0
    assert inbox.mails == []
    assert waiting(notifier) == 1


def test_session_changed_returns_at_once_while_the_relay_hangs(tmp_path: Path, pki: tuple[ssl.SSLContext, Path],
                                                                notifiers: list[Notifier]) -> None:
    events: list[str] = []
    accepted = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as hanging:
        port = hanging.getsockname()[1]

        def accept_and_never_answer() -> None:
            connection, _ = hanging.accept()
            with connection:
                connection.settimeout(60)
                events.append("relay accepted")
                accepted.set()
                if connection.recv(1024) == b"":  # the agent never gets a greeting; it says nothing either
                    events.append("agent hung up")

        relay_thread = threading.Thread(target=accept_and_never_answer, daemon=True)
        relay_thread.start()
        # A relay that answers within 300 s counts as up: without the thread, the caller would wait that long.
        notifier = make_notifier(notifiers, notify_config(port, pki[1], timeout_s=300), tmp_path)
        notifier.start()
        notifier.session_changed(session().to_dict())
        assert accepted.wait(20), "the sender did not connect"

        caller = threading.Thread(target=notifier.session_changed,
                                  args=(ended(session()).to_dict(),))
        caller.start()
        caller.join(20)
        assert not caller.is_alive(), "session_changed waited for the relay"
        events.append("session_changed returned")
        assert notifier.running
        assert waiting(notifier) == 2  # both queued while the first is still being sent

        notifier.stop()  # cuts the hung conversation instead of waiting 300 s
        relay_thread.join(20)
        assert not notifier.running
    assert events == ["relay accepted", "session_changed returned", "agent hung up"]
    assert waiting(notifier) == 2  # nothing lost: both go at the next start


# ---- configuration ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "message"), [
    ({"smtp_host": "smtp.hospital.example", "username": "ct1"},
     ["[notify] username = 'ct1' needs password_file", "never in agent.toml"]),
    ({"smtp_host": "smtp.hospital.example", "password_file": "/etc/servicegate/smtp-password"},
     ["password_file = '/etc/servicegate/smtp-password' is set but username is empty"]),
    ({"technical_staff": ["biomed@hospital.example", "dana"]},
     ["[notify] technical_staff: 'dana' is not an e-mail address", "radiology-it@hospital.example"]),
    ({"clinical_staff": ["Lead Tech <lead@hospital.example>"]},
     ["[notify] clinical_staff: 'Lead Tech <lead@hospital.example>' is not an e-mail address"]),
    ({"clinical_staff": ["a@x.example, b@x.example"]}, ["is not an e-mail address"]),
    ({"sender": "servicegate"}, ["[notify] sender: 'servicegate' is not an e-mail address"]),
    ({"smtp_host": "smtp.hospital.example", "starttls": False},
     ["starttls = false is allowed only for a relay on this machine", "'smtp.hospital.example'",
      "Set starttls = true"]),
    ({"smtp_port": 0}, ["[notify] smtp_port = 0 is out of range", "from 1 to 65535"]),
    ({"technical_staff": "biomed@hospital.example"}, ["[notify] technical_staff", "is not a list"]),
])
def test_configuration_mistakes_get_a_clear_message(table: dict[str, Any], message: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping({"notify": table}, Path("/etc/servicegate/agent.toml"))
    text = str(caught.value)
    assert text.startswith("/etc/servicegate/agent.toml: ")
    for part in message:
        assert part in text, text


def test_configuration_defaults_and_a_full_section(tmp_path: Path) -> None:
    notify = from_mapping({}).notify
    assert (notify.smtp_host, notify.smtp_port, notify.starttls, notify.timeout_s) == ("", 587, True, 10)
    assert notify.technical_staff == ()
    assert notify.clinical_staff == ()
    assert notify.sender == ""
    notify = from_mapping({"notify": {
        "smtp_host": "smtp.hospital.example", "smtp_port": 25, "ca_file": "pki/relay-ca.pem", "username": "ct1",
        "password_file": "smtp-password", "sender": "ct1@hospital.example", "technical_staff": list(TECHNICAL),
        "clinical_staff": list(CLINICAL), "timeout_s": 30}}, tmp_path / "agent.toml").notify
    assert notify.ca_file == tmp_path / "pki" / "relay-ca.pem"
    assert notify.password_file == tmp_path / "smtp-password"
    assert notify.technical_staff == TECHNICAL
    assert notify.clinical_staff == CLINICAL
    local = from_mapping({"notify": {"smtp_host": "localhost", "starttls": False}}).notify
    assert not local.starttls
