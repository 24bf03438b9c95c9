"""The screen relay: a device shares its console's screen with the engineer without a port open on the device.

On the device x11vnc serves the screen on loopback only. The agent connects OUTWARD to this relay port (raw TLS,
mutual: its device certificate), says which session and task the share belongs to in one line, and then pipes
bytes between this connection and its loopback VNC server. The portal opens a listener on its own loopback for the
engineer's VNC viewer and pipes between the two. docs/protocol.md, "Screen relay", is the wire format.

Why so, and not otherwise:

- Raw TLS, not WebSocket or HTTP: the stream is VNC's own byte stream, and a viewer speaks it unchanged. The
  relay runs in the uvicorn server's event loop (`create_app`'s lifespan starts it), so it shares the portal's
  store and CA, and nothing else has to be deployed.
- Who the device is comes from its verified client certificate, decided as for HTTPS (`portal.auth.
  certified_device`): a certificate the portal replaced is refused even though the CA signed it.
- The session must be the device's and `active` as its own session events report it, and it may have one relay at
  a time. The kind of session does not matter: whether the screen may be shared is the device's policy (a task
  the technologist allowed), decided on the device before it connects.
- Until the viewer connects nothing is read from the device: the VNC server speaks first (its version greeting),
  and that greeting must reach the viewer, so it waits in the buffers. One viewer only: a second connection is
  closed at once, so nobody joins a share unnoticed. When either side closes, both are closed and the listener
  too; a viewer that does not come within `viewer_wait_s` ends the share (`no viewer`).
- The VNC password travels in the first line so that the engineer's command (`engineer screen`) can show it; it is
  never logged, and `show` leaves it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from portal.auth import CertificateRefused, certified_device
from portal.pki import PortalPki
from portal.store import ScreenRefused, Store

PROTOCOL = "SERVICEGATE-RELAY/1"
MAX_LINE_BYTES = 256  # the first line, its "\n" included
HELLO_TIMEOUT_S = 10.0
VIEWER_WAIT_S = 10 * 60.0
VIEWER_HOST = "127.0.0.1"  # the engineer's viewer connects on the portal's own machine only
CHUNK_BYTES = 64 * 1024
CLOSE_WAIT_S = 1.0  # for a peer's answer to TLS's close_notify (a device reading gets EOF and closes); then dropped
_HELLO = re.compile(rf"{re.escape(PROTOCOL)} ([0-9]{{8}}) ([A-Za-z0-9][A-Za-z0-9_-]{{0,39}}) ([A-Za-z0-9]{{8,64}})")
_FORMAT = f"{PROTOCOL} <session ID: 8 digits> <task ID: a-z 0-9 -> <VNC password: 8 to 64 letters and digits>"

log = logging.getLogger("servicegate.portal.relay")


class Refused(Exception):
    """A relay the portal will not carry; the message goes to the device as `REFUSED <message>`."""


@dataclass(frozen=True)
class Hello:
    """The device's first line."""

    session_id: str
    task_id: str
    password: str


def parse_hello(line: bytes) -> Hello:
    """The first line (with its "\\n"), or Refused saying what is wrong. The line is not echoed: it holds a
    password."""
    if len(line) > MAX_LINE_BYTES:
        raise Refused(f"the first line is longer than {MAX_LINE_BYTES} bytes; it must be: {_FORMAT}")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise Refused(f"the first line is not ASCII; it must be: {_FORMAT}") from None
    found = _HELLO.fullmatch(text.removesuffix("\n"))
    if not text.endswith("\n") or found is None:
        if not text.startswith(PROTOCOL + " "):
            raise Refused(f"this is the ServiceGate screen relay; the first line must be: {_FORMAT}")
        raise Refused(f"the first line is malformed; it must be: {_FORMAT}")
    return Hello(found[1], found[2], found[3])


def server_context(pki: PortalPki) -> ssl.SSLContext:
    """TLS 1.2 or newer with the portal's server certificate; a client certificate from the vendor CA is required,
    so a connection without one fails in the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass
class _Counts:
    to_viewer: int = 0
    to_device: int = 0


@dataclass
class _Viewer:
    """The listener for the engineer's viewer: the first connection is the viewer, any later one is closed."""

    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    extra: list[asyncio.StreamWriter] = field(default_factory=list)

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connected.done():
            log.info("a second viewer connection from %s was closed: one viewer per screen share",
                     writer.get_extra_info("peername"))
            writer.close()
            self.extra.append(writer)  # kept until the share ends, so that its closing is awaited
            return
        self.connected.set_result((reader, writer))


class Relay:
    """The relay on `sock` (bound by the caller, which can then say its port before the server runs). `host` is
    what devices are told to connect to (`GET /v1/relay`). Start it in the server's event loop; `close()` ends every
    share with the reason `the portal stopped`."""

    def __init__(self, store: Store, pki: PortalPki, sock: socket.socket, *, host: str,
                 hello_timeout_s: float = HELLO_TIMEOUT_S, viewer_wait_s: float = VIEWER_WAIT_S) -> None:
        self.store = store
        self.host = host
        self.port: int = sock.getsockname()[1]
        self._context = server_context(pki)
        self._sock = sock
        self._hello_timeout_s = hello_timeout_s
        self._viewer_wait_s = viewer_wait_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # Shares a previous process left open cannot go on: their connections went with it.
        ended = await asyncio.to_thread(self.store.end_open_screens, "the portal stopped without ending it")
        if ended:
            log.info("%d screen share(s) left open by the portal's previous run were ended", ended)
        self._server = await asyncio.start_server(self._serve, sock=self._sock, ssl=self._context,
                                                  ssl_handshake_timeout=self._hello_timeout_s)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await self._relay(reader, writer, peer)
        except Exception:  # a bug, not the device's doing: said in the log, the connection closed
            log.exception("the screen relay for %s failed", peer)
        finally:
            await _close(writer)
            if task is not None:
                self._connections.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object) -> None:
        known: str | None = None  # the device, once its certificate is checked: for the log
        try:
            line = await self._first_line(reader)
            device_id = known = await asyncio.to_thread(self._device, writer)
            hello = parse_hello(line)
        except Refused as exc:
            log.info("screen relay from %s (device %s) refused: %s", peer, known or "unknown", exc)
            await asyncio.to_thread(self.store.log, known, "screen_refused", str(exc))
            await _refuse(writer, str(exc))
            return
        connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.get_running_loop().create_future()
        viewer = _Viewer(connected)
        listener = await asyncio.start_server(viewer.accept, VIEWER_HOST, 0)
        viewer_port: int = listener.sockets[0].getsockname()[1]
        screen_id = 0
        counts = _Counts()
        reason = "the portal stopped"  # unless something below says otherwise
        try:
            try:
                screen_id = await asyncio.to_thread(self.store.start_screen, device_id, hello.session_id,
                                                    task_id=hello.task_id, password=hello.password,
                                                    viewer_port=viewer_port)
            except ScreenRefused as exc:
                log.info("screen relay from %s (device %s) refused: %s", peer, device_id, exc)
                await _refuse(writer, str(exc))
                return
            log.info("screen of device %s, session %s, task %s: waiting for the viewer on %s:%d", device_id,
                     hello.session_id, hello.task_id, VIEWER_HOST, viewer_port)
            writer.write(b"OK\n")
            await writer.drain()
            reason = await self._wait_for_viewer(connected, writer)
            if not reason:
                viewer_reader, viewer_writer = connected.result()
                await asyncio.to_thread(self.store.screen_viewing, screen_id)
                reason = await _pipe_both(reader, writer, viewer_reader, viewer_writer, counts)
        except OSError as exc:  # the device's connection broke while the portal answered it
            reason = f"the device's connection broke ({exc.strerror or exc})"
        finally:
            listener.close()
            if connected.done():  # also a viewer that came just as the device went
                await _close(connected.result()[1])
            else:
                connected.cancel()
            for extra in viewer.extra:
                await _close(extra)
            await listener.wait_closed()
            if screen_id:
                # Shielded: when the portal stops, this task is cancelled, and the record must still be ended.
                await asyncio.shield(asyncio.to_thread(self.store.screen_ended, screen_id, reason,
                                                       bytes_to_viewer=counts.to_viewer,
                                                       bytes_to_device=counts.to_device))
                log.info("screen share %d of session %s ended: %s (%d bytes to the viewer, %d to the device)",
                         screen_id, hello.session_id, reason, counts.to_viewer, counts.to_device)

    async def _first_line(self, reader: asyncio.StreamReader) -> bytes:
        """Byte by byte from the stream's buffer: a line over MAX_LINE_BYTES is refused as soon as it is, and
        nothing after the "\n" is taken (a VNC server's greeting may follow at once: it is the viewer's)."""
        line = bytearray()
        try:
            async with asyncio.timeout(self._hello_timeout_s):
                while not line.endswith(b"\n"):
                    if len(line) >= MAX_LINE_BYTES:
                        raise Refused(f"the first line is longer than {MAX_LINE_BYTES} bytes; it must be: {_FORMAT}")
                    line += await reader.readexactly(1)
        except TimeoutError:
            raise Refused(f"no first line within {self._hello_timeout_s:g} s; send: {_FORMAT}") from None
        except (asyncio.IncompleteReadError, OSError):
            raise Refused(f"the connection ended before the first line; send: {_FORMAT}") from None
        return bytes(line)

    def _device(self, writer: asyncio.StreamWriter) -> str:
        """The device the verified client certificate names, as the HTTPS side decides it (blocking: SQLite)."""
        ssl_object: ssl.SSLObject | None = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:  # CERT_REQUIRED makes this impossible; said all the same
            raise Refused("a client certificate is needed: enroll the device first (servicegate enroll)")
        try:
            return certified_device(self.store, x509.load_der_x509_certificate(der))
        except CertificateRefused as exc:
            raise Refused(str(exc)) from None

    async def _wait_for_viewer(self, connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                               device: asyncio.StreamWriter) -> str:
        """Wait for the viewer without reading from the device; the device closing ends the wait. "" when the
        viewer is there, else why the share is over."""
        # Not cancelled when the viewer comes first: cancelling it would cancel the stream's own close waiter. It
        # ends when the device's connection is closed, which _serve always does.
        device_gone = asyncio.ensure_future(_until_closed(device))
        waiting: set[asyncio.Future[Any]] = {connected, device_gone}
        done, _ = await asyncio.wait(waiting, timeout=self._viewer_wait_s, return_when=asyncio.FIRST_COMPLETED)
        if connected in done:
            return ""
        if device_gone in done:
            return "the device closed the connection before a viewer connected"
        return "no viewer"


async def _pipe_both(device_reader: asyncio.StreamReader, device_writer: asyncio.StreamWriter,
                     viewer_reader: asyncio.StreamReader, viewer_writer: asyncio.StreamWriter, counts: _Counts) -> str:
    """Bytes both ways, unchanged, until either side closes; the reason it ended."""
    def to_viewer(n: int) -> None:
        counts.to_viewer += n

    def to_device(n: int) -> None:
        counts.to_device += n

    pipes = [asyncio.create_task(_pipe(device_reader, viewer_writer, "device", "viewer", to_viewer)),
             asyncio.create_task(_pipe(viewer_reader, device_writer, "viewer", "device", to_device))]
    try:
        done, _ = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
    return next(pipe for pipe in pipes if pipe in done).result()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, source_name: str, sink_name: str,
                count: Callable[[int], None]) -> str:
    while True:
        try:
            data = await source.read(CHUNK_BYTES)
        except OSError as exc:
            return f"the {source_name}'s connection broke ({exc.strerror or exc})"
        if not data:
            return f"the {source_name} closed the connection"
        try:
            sink.write(data)
            count(len(data))  # handed on: closing the sink flushes it, even when this pipe is cancelled
            await sink.drain()
        except OSError as exc:
            return f"the {sink_name}'s connection broke ({exc.strerror or exc})"


async def _until_closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    with contextlib.suppress(OSError):
        writer.write(f"REFUSED {reason}\n".encode("ascii", "replace"))
        await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close, flushing what is written; a peer that does not answer TLS's close_notify is not waited for long."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_WAIT_S):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass
