"""The screen relay (portal/relay.py; docs/protocol.md, "Screen relay") against a real portal process with its real CA.

The device side is written out by hand, as in test_portal.py: a device enrolled with its own key and CSR, and a TLS
client with its certificate that sends the first line and then plays the VNC server (bytes). The engineer's
viewer is a plain TCP client on the portal's loopback, and `servicegate-portal engineer screen` tells it where.

How a session becomes active here: the engineer opens it (`engineer open-session`), the device claims it
(`POST /v1/sessions/claim`) and reports it active as a session event in its telemetry (`POST /v1/logs`, an
OTLP document built by the outbox, as the agent's shipper sends it). That is the path by which the portal learns
of every session's state; only the one-time password check before it happens on the device, and no agent runs here.

The hello timeout and the 10 minutes a share waits for its viewer are tested on the library (`Relay` with short
timeouts) run in this process, on a real portal's data folder, CA and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.pki import PortalPki
from portal.relay import Relay
from portal.store import Store
from telemetry.otlp import logs_request
from telemetry.outbox import Outbox
from tests.pki import make_pki
from tests.portal_process import PortalProcess
from tests.test_connection import wait_for
from tests.test_portal import Device, enroll, session

PASSWORD = "Vnc4711secret"
GREETING = b"RFB 003.008\n"  # what a VNC server says first
MEGABYTE = 1024 * 1024


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalProcess]:
    with PortalProcess(tmp_path_factory.mktemp("portal")) as running:
        yield running
        # Nothing the devices and viewers did here was the portal's error: no traceback in its log.
        process = running.process
        assert process is not None
        assert process.stderr is not None
        process.terminate()
        process.wait(10)
        log = process.stderr.read()
        assert " ERROR " not in log, log
        assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def devices(portal: PortalProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Device]:
    folder = tmp_path_factory.mktemp("devices")
    return {device_id: enroll(portal, device_id, folder) for device_id in ("ct-5001", "ct-5002")}


# --- the device's side ---------------------------------------------------------------------------------------

def report(portal: PortalProcess, device: Device, kind: str, body: dict[str, Any]) -> None:
    """One record from the device's outbox (kept beside its key, so sequences go on) to `POST /v1/logs`."""
    with Outbox(device.key.with_suffix(".outbox.sqlite")) as outbox:
        outbox.put(kind, body)
        batch = outbox.batch()
        answer = session(portal, device).post(f"{portal.url}/v1/logs", json=logs_request(batch, {}), timeout=10)
        assert answer.status_code == 200, answer.text
        outbox.ack([record.sequence for record in batch])


def open_session(portal: PortalProcess, device: Device, *, kind: str = "application-support") -> str:
    out = portal.cli("engineer", "open-session", "--device", device.device_id, "--engineer-id", "E-0815", "--name",
                     "Jo Viewer", "--company", "Acme Medical Service", "--reason", "show the new protocol editor",
                     "--level", "limited", "--kind", kind)
    return out.splitlines()[0]


def claim(portal: PortalProcess, device: Device, session_id: str) -> None:
    answer = session(portal, device).post(f"{portal.url}/v1/sessions/claim", json={"session_id": session_id},
                                          timeout=10)
    assert answer.status_code == 200, answer.text


def set_state(portal: PortalProcess, device: Device, session_id: str, state: str) -> None:
    report(portal, device, "session_event", {"session_id": session_id, "state": state})


def active_session(portal: PortalProcess, device: Device) -> str:
    session_id = open_session(portal, device)
    claim(portal, device, session_id)
    set_state(portal, device, session_id, "active")
    now = Store(portal.data_dir / "portal.sqlite").session(session_id)
    assert now is not None
    assert now["state"] == "active"
    return session_id


def client_context(portal: PortalProcess, cert: tuple[Path, Path] | None,
                   version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """The device's TLS: the portal verified against the vendor CA; its own certificate when it has one."""
    context = ssl.create_default_context(cafile=str(portal.ca_file))
    if cert is not None:
        context.load_cert_chain(*cert)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def connect(portal: PortalProcess, cert: tuple[Path, Path] | None,
            version: ssl.TLSVersion | None = None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", portal.relay_port), timeout=10)
    try:
        return client_context(portal, cert, version).wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def handshake_refused(portal: PortalProcess, cert: tuple[Path, Path] | None, session_id: str) -> None:
    """The portal does not complete a TLS handshake with `cert` (None: no certificate). Under TLS 1.2 the client
    sees its own handshake fail; under TLS 1.3 the client's side of the handshake is over before the server checks
    the certificate, and the connection ends without a byte of answer."""
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        connect(portal, cert, ssl.TLSVersion.TLSv1_2).close()
    try:
        with connect(portal, cert, ssl.TLSVersion.TLSv1_3) as sock:
            sock.sendall(hello(session_id))
            answer = sock.recv(64)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        answer = b""
    assert answer == b""


def read_line(sock: ssl.SSLSocket) -> str:
    """One line, byte by byte (nothing after it is taken); "" when the portal closed without one."""
    line = b""
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line.decode()


def hello(session_id: str, task_id: str = "screen-1", password: str = PASSWORD) -> bytes:
    return f"SERVICEGATE-RELAY/1 {session_id} {task_id} {password}\n".encode()


def relay(portal: PortalProcess, device: Device, line: bytes) -> tuple[ssl.SSLSocket, str]:
    """Connect as `device`, send `line`; the connection and the portal's answer."""
    sock = connect(portal, (device.cert, device.key))
    sock.sendall(line)
    return sock, read_line(sock)


def refused(portal: PortalProcess, device: Device, line: bytes) -> str:
    """The portal's REFUSED line for `line`; the portal closes the connection after it."""
    sock, answer = relay(portal, device, line)
    with sock:
        assert answer.startswith("REFUSED "), answer
        assert answer.endswith("\n")
        assert sock.recv(1) == b""
    return answer.removeprefix("REFUSED ").strip()


def shares(portal: PortalProcess, session_id: str) -> list[dict[str, Any]]:
    return Store(portal.data_dir / "portal.sqlite").screens(session_id=session_id, passwords=True)


def accepted_then_closed(portal: PortalProcess, device: Device, session_id: str) -> None:
    """The positive control: OK; then the device closes and the share ends."""
    sock, answer = relay(portal, device, hello(session_id))
    assert answer == "OK\n"
    sock.close()
    wait_for("the share to end", lambda: shares(portal, session_id)[-1]["state"] == "ended", 15)


def engineer_screen(portal: PortalProcess, session_id: str, *extra: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(portal.cli("engineer", "screen", "--session-id", session_id, *extra))
    return shown


# --- the relay's address ---------------------------------------------------------------------------------------

def test_the_relay_port_is_printed_at_start_and_told_to_devices(portal: PortalProcess,
                                                                  devices: dict[str, Device]) -> None:
    assert portal.relay_port not in (0, portal.port)
    answer = session(portal, devices["ct-5001"]).get(f"{portal.url}/v1/relay", timeout=10)
    assert answer.json() == {"host": "127.0.0.1", "port": portal.relay_port}
    anonymous = session(portal).get(f"{portal.url}/v1/relay", timeout=10)
    assert anonymous.status_code == 401
    assert "client certificate" in anonymous.json()["detail"]


# --- the pipe ---------------------------------------------------------------------------------------------------

def test_the_screen_flows_both_ways_unchanged_and_closing_the_device_ends_it(portal: PortalProcess,
                                                                             devices: dict[str, Device]) -> None:
    device = devices["ct-5001"]
    session_id = active_session(portal, device)
    to_viewer, to_device = os.urandom(MEGABYTE), os.urandom(MEGABYTE)

    async def scenario() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", portal.relay_port, ssl=client_context(portal, (device.cert, device.key)),
            server_hostname="127.0.0.1")
        writer.write(hello(session_id, "screen-share-7"))
        assert await reader.readline() == b"OK\n"
        writer.write(GREETING)  # the VNC server speaks first; the portal keeps it for the viewer
        waiting = await asyncio.to_thread(engineer_screen, portal, session_id)
        assert waiting["state"] == "waiting"
        assert waiting["viewer"] == f"127.0.0.1::{waiting['port']}"
        assert (waiting["password"], waiting["task_id"], waiting["device_id"]) == \
            (PASSWORD, "screen-share-7", device.device_id)

        viewer_reader, viewer_writer = await asyncio.open_connection("127.0.0.1", waiting["port"])
        assert await asyncio.wait_for(viewer_reader.readexactly(len(GREETING)), 10) == GREETING
        # A second viewer is closed at once.
        second_reader, second_writer = await asyncio.open_connection("127.0.0.1", waiting["port"])
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(second_reader.read(1), 10) == b""
        second_writer.close()
        viewing = await asyncio.to_thread(engineer_screen, portal, session_id, "--wait", "10")
        assert viewing["state"] == "viewing"
        assert viewing["viewer_connected"] is not None

        # A megabyte each way at once, in uneven pieces.
        async def send(stream: asyncio.StreamWriter, data: bytes) -> None:
            for start in range(0, len(data), 7001):
                stream.write(data[start:start + 7001])
                await stream.drain()

        got = await asyncio.wait_for(asyncio.gather(
            send(writer, to_viewer), send(viewer_writer, to_device),
            viewer_reader.readexactly(MEGABYTE), reader.readexactly(MEGABYTE)), 60)
        assert got[2] == to_viewer
        assert got[3] == to_device

        writer.close()  # the device ends the share: the viewer is disconnected
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(viewer_reader.read(1), 10) == b""
        viewer_writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        with contextlib.suppress(OSError):
            await viewer_writer.wait_closed()
        with contextlib.suppress(OSError):
            await second_writer.wait_closed()
        return waiting

    waiting = asyncio.run(scenario())
    ended = wait_for("the share to end", lambda: (s := shares(portal, session_id)[-1])["state"] == "ended" and s, 15)
    assert ended["end_reason"] == "the device closed the connection"
    assert (ended["bytes_to_viewer"], ended["bytes_to_device"]) == (len(GREETING) + MEGABYTE, MEGABYTE)
    assert ended["viewer_connected"] <= ended["ended"]
    assert waiting["password"] == PASSWORD
    assert ended["password"] == ""  # one-time: forgotten once the share ended
    # The listener is gone with the share.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", waiting["port"]), timeout=5).close()
    # `show` has the share without its password; the portal's log never names the password.
    [shown] = [s for s in portal.show(device.device_id)["screens"] if s["session_id"] == session_id]
    assert "password" not in shown
    assert shown["end_reason"] == "the device closed the connection"
    assert PASSWORD not in portal.cli("events")
    # The engineer's command says when there is nothing to view.
    late = portal.run("engineer", "screen", "--session-id", session_id, "--wait", "0.5")
    assert late.returncode == 1
    assert "ended (the device closed the connection)" in late.stderr
    assert "Traceback" not in late.stderr
    assert engineer_screen(portal, session_id)["state"] == "ended"  # without --wait: the newest, whatever it is


def test_the_engineer_is_told_when_a_session_has_no_screen_share(portal: PortalProcess,
                                                                 devices: dict[str, Device]) -> None:
    session_id = active_session(portal, devices["ct-5001"])
    none = portal.run("engineer", "screen", "--session-id", session_id)
    assert none.returncode == 1
    assert f"session {session_id} has no screen share" in none.stderr
    unknown = portal.run("engineer", "screen", "--session-id", "00000000")
    assert unknown.returncode == 2
    assert "no session '00000000'" in unknown.stderr
    assert "Traceback" not in none.stderr + unknown.stderr
    # Positive control: with a share waiting, it is shown.
    sock, answer = relay(portal, devices["ct-5001"], hello(session_id))
    assert answer == "OK\n"
    assert engineer_screen(portal, session_id, "--wait", "5")["state"] == "waiting"
    sock.close()
    wait_for("the share to end", lambda: shares(portal, session_id)[-1]["state"] == "ended", 15)
    assert shares(portal, session_id)[-1]["end_reason"] == \
        "the device closed the connection before a viewer connected"


def test_closing_the_viewer_disconnects_the_device(portal: PortalProcess, devices: dict[str, Device]) -> None:
    device = devices["ct-5001"]
    session_id = active_session(portal, device)
    sock, answer = relay(portal, device, hello(session_id))
    with sock:
        assert answer == "OK\n"
        port = engineer_screen(portal, session_id)["port"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as viewer:
            viewer.sendall(b"RFB 003.008\n")
            assert sock.recv(12) == b"RFB 003.008\n"
        assert sock.recv(1) == b""  # the portal closed the device's side too
    ended = wait_for("the share to end", lambda: (s := shares(portal, session_id)[-1])["state"] == "ended" and s, 15)
    assert (ended["end_reason"], ended["bytes_to_viewer"], ended["bytes_to_device"]) == \
        ("the viewer closed the connection", 0, 12)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


# --- who may relay ------------------------------------------------------------------------------------------------

def test_a_connection_without_a_client_certificate_fails_in_the_tls_handshake(portal: PortalProcess,
                                                                              devices: dict[str, Device]) -> None:
    session_id = active_session(portal, devices["ct-5001"])
    handshake_refused(portal, None, session_id)
    assert shares(portal, session_id) == []
    accepted_then_closed(portal, devices["ct-5001"], session_id)


def test_a_certificate_from_another_ca_fails_in_the_tls_handshake(portal: PortalProcess, devices: dict[str, Device],
                                                                  tmp_path: Path) -> None:
    session_id = active_session(portal, devices["ct-5001"])
    stranger = make_pki(tmp_path / "stranger", device_id="ct-5001")  # the same name, another CA
    handshake_refused(portal, (stranger.client_cert, stranger.client_key), session_id)
    assert shares(portal, session_id) == []
    accepted_then_closed(portal, devices["ct-5001"], session_id)


def test_a_replaced_certificate_is_refused_as_on_https(portal: PortalProcess, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    old = enroll(portal, "ct-5003", tmp_path / "old")
    new = enroll(portal, "ct-5003", tmp_path)  # enrolled again: the old certificate is no longer the device's
    session_id = active_session(portal, new)
    reason = refused(portal, old, hello(session_id))
    assert reason == "this certificate is not the current one of an enrolled device: enroll again"
    assert session(portal, old).get(f"{portal.url}/v1/device", timeout=10).status_code == 403  # the same decision
    accepted_then_closed(portal, new, session_id)


def test_another_devices_session_is_refused(portal: PortalProcess, devices: dict[str, Device]) -> None:
    a, b = devices["ct-5001"], devices["ct-5002"]
    session_id = active_session(portal, a)
    reason = refused(portal, b, hello(session_id))
    assert reason == f"no session {session_id} of this device: check the session ID"
    assert refused(portal, b, hello("00000000")) == "no session 00000000 of this device: check the session ID"
    logged = [e["detail"] for e in Store(portal.data_dir / "portal.sqlite").events(b.device_id)
              if e["event"] == "screen_refused"]
    assert any(session_id in detail and "another device's" in detail for detail in logged), logged
    assert shares(portal, session_id) == []
    accepted_then_closed(portal, a, session_id)


def test_a_session_that_is_not_active_is_refused(portal: PortalProcess, devices: dict[str, Device]) -> None:
    device = devices["ct-5001"]
    session_id = open_session(portal, device, kind="service")  # a service session may share too, once active
    assert refused(portal, device, hello(session_id)).startswith(f"session {session_id} is open, not active")
    claim(portal, device, session_id)
    assert refused(portal, device, hello(session_id)).startswith(f"session {session_id} is claimed, not active")
    set_state(portal, device, session_id, "active")
    accepted_then_closed(portal, device, session_id)
    set_state(portal, device, session_id, "ended")
    assert refused(portal, device, hello(session_id)).startswith(f"session {session_id} is ended, not active")


@pytest.mark.parametrize("line", [
    b"RFB 003.008\n",  # a VNC greeting: not the relay's protocol
    b"SERVICEGATE-RELAY/2 {session} screen-1 Vnc4711secret\n",
    b"SERVICEGATE-RELAY/1 1234567 screen-1 Vnc4711secret\n",  # 7 digits
    b"SERVICEGATE-RELAY/1 {session} -screen-1 Vnc4711secret\n",  # a task ID must start with a letter or digit
    b"SERVICEGATE-RELAY/1 {session} " + b"t" * 65 + b" Vnc4711secret\n",  # task ID too long
    b"SERVICEGATE-RELAY/1 {session} screen-1 Vnc4711\n",  # password too short
    b"SERVICEGATE-RELAY/1 {session} screen-1 " + b"p" * 65 + b"\n",  # password too long
    b"SERVICEGATE-RELAY/1 {session} screen-1 Vnc4711-secret\n",  # not only letters and digits
    b"SERVICEGATE-RELAY/1 {session} screen-1 Vnc4711secret extra\n",
    b"SERVICEGATE-RELAY/1  {session} screen-1 Vnc4711secret\n",
    b"SERVICEGATE-RELAY/1 {session} screen-1 Vnc4711secret\r\n",
    b"SERVICEGATE-RELAY/1 {session} screen-1 Vnc4711secr\xc3\xa9t\n",  # not ASCII
    b"SERVICEGATE-RELAY/1 {session} screen-1 Vnc4711secret" + b" " * 220 + b"\n",  # over 256 bytes
    b"SERVICEGATE-RELAY/1 {session} screen-1 " + b"x" * 300,  # no end: refused at once, not after 10 s
], ids=lambda line: re.sub(rb"[^a-zA-Z0-9/ -]", b"?", line[:40]).decode())
def test_a_malformed_first_line_is_refused(portal: PortalProcess, devices: dict[str, Device], line: bytes) -> None:
    device = devices["ct-5001"]
    session_id = active_session(portal, device)
    reason = refused(portal, device, line.replace(b"{session}", session_id.encode()))
    assert "SERVICEGATE-RELAY/1 <session ID: 8 digits> <task ID: a-z 0-9 -> <VNC password: 8 to 64 letters and " \
           "digits>" in reason
    assert "Vnc4711" not in reason  # the line, which holds a password, is not echoed
    assert shares(portal, session_id) == []
    accepted_then_closed(portal, device, session_id)


def test_a_second_relay_for_a_session_is_refused_while_one_is_open(portal: PortalProcess,
                                                                   devices: dict[str, Device]) -> None:
    device = devices["ct-5001"]
    session_id = active_session(portal, device)
    first, answer = relay(portal, device, hello(session_id, "screen-1"))
    assert answer == "OK\n"
    reason = refused(portal, device, hello(session_id, "screen-2"))
    assert reason == (f"the screen of session {session_id} is already relayed (task screen-1); only one relay per "
                      "session: end that one first")
    assert [s["task_id"] for s in shares(portal, session_id)] == ["screen-1"]
    first.close()
    wait_for("the first share to end", lambda: shares(portal, session_id)[-1]["state"] == "ended", 15)
    # Positive control: once the first is over, the session may relay again.
    accepted_then_closed(portal, device, session_id)
    assert [s["task_id"] for s in shares(portal, session_id)] == ["screen-1", "screen-1"]


# --- timeouts, on the library with short ones ------------------------------------------------------------------

@contextlib.contextmanager
def relay_in_process(portal: PortalProcess, *, hello_timeout_s: float, viewer_wait_s: float) -> Iterator[Relay]:
    """A `Relay` on the portal's data folder (its CA, server certificate and store), in an event loop of its own."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    relay = Relay(Store(portal.data_dir / "portal.sqlite"), PortalPki(portal.data_dir), sock, host="127.0.0.1",
                  hello_timeout_s=hello_timeout_s, viewer_wait_s=viewer_wait_s)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(relay.start(), loop).result(10)
        yield relay
    finally:
        asyncio.run_coroutine_threadsafe(relay.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_silent_device_and_a_share_without_a_viewer_are_ended(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    # A portal of its own: the relay in this process ends the shares its store holds open when it starts.
    caplog.set_level(logging.INFO, logger="servicegate.portal.relay")
    with PortalProcess(tmp_path / "portal") as own:
        device = enroll(own, "ct-5004", tmp_path)
        session_id = active_session(own, device)
        with relay_in_process(own, hello_timeout_s=0.5, viewer_wait_s=1) as in_process:
            own.relay_port = in_process.port  # the helpers connect to this one
            silent = connect(own, (device.cert, device.key))
            with silent:
                assert read_line(silent) == "REFUSED no first line within 0.5 s; send: SERVICEGATE-RELAY/1 " \
                    "<session ID: 8 digits> <task ID: a-z 0-9 -> <VNC password: 8 to 64 letters and digits>\n"
            # The refusal is in the portal's log, at INFO, with its reason.
            assert any(r.levelno == logging.INFO and "refused: no first line within 0.5 s" in r.getMessage()
                       for r in caplog.records), caplog.text
            sock, answer = relay(own, device, hello(session_id))
            with sock:
                assert answer == "OK\n"
                assert sock.recv(1) == b""  # closed by the portal: nobody came to view
            [share] = shares(own, session_id)
            assert (share["state"], share["end_reason"]) == ("ended", "no viewer")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", share["viewer_port"]), timeout=5).close()
            # Positive control: a viewer that comes in time gets the screen.
            sock, answer = relay(own, device, hello(session_id))
            assert answer == "OK\n"
            sock.sendall(GREETING)
            port = wait_for("the share", lambda: shares(own, session_id)[-1]["state"] == "waiting" and
                            shares(own, session_id)[-1]["viewer_port"], 5)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as viewer:
                assert viewer.recv(len(GREETING)) == GREETING
                wait_for("the viewer to be seen", lambda: shares(own, session_id)[-1]["state"] == "viewing", 5)
                sock.close()
                assert viewer.recv(1) == b""
            wait_for("the share to end", lambda: shares(own, session_id)[-1]["state"] == "ended", 10)
            assert shares(own, session_id)[-1]["end_reason"] == "the device closed the connection"


def test_a_portal_that_stops_ends_its_shares_and_one_that_crashed_ends_them_at_its_start(tmp_path: Path) -> None:
    with PortalProcess(tmp_path / "portal") as own:
        device = enroll(own, "ct-5005", tmp_path)
        session_id = active_session(own, device)
        sock, answer = relay(own, device, hello(session_id))
        assert answer == "OK\n"
        started = time.monotonic()
        own.stop()  # SIGTERM: uvicorn shuts down, and the relay with it
        assert time.monotonic() - started < 5  # a device that does not answer TLS's close is not waited for
        with sock, contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""
        share = shares(own, session_id)[-1]
        assert (share["state"], share["end_reason"]) == ("ended", "the portal stopped")
        # A crash leaves its share waiting; the next start ends it.
        own.start()
        sock, answer = relay(own, device, hello(session_id))
        assert answer == "OK\n"
        assert own.process is not None
        own.process.kill()
        own.process.wait()
        assert shares(own, session_id)[-1]["state"] == "waiting"
        own.restart()
        share = shares(own, session_id)[-1]
        assert (share["state"], share["end_reason"]) == ("ended", "the portal stopped without ending it")
        sock.close()
        # Positive control: the restarted portal relays the session again.
        accepted_then_closed(own, device, session_id)
