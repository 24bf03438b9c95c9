"""Screen sharing for application support: the console's screen, served by x11vnc on loopback and relayed to the
portal over a connection the agent opens. No port on the device is reachable from outside.

- **The VNC server is a task.** The catalog's `share-screen` (`screen = true`, application support, so the
  technologist confirms it at the console) runs `agent.builtin_tasks share-screen`, which becomes x11vnc on the
  console's display, listening on 127.0.0.1 only, with a one-time password made here for this share. Being a task,
  it ends the way every task ends: End session, the kill switch, the session's time limit, the technologist's Stop.
- **The relay** (`Relay`, on the daemon's event loop) waits until x11vnc listens, asks the portal where its relay
  is (`GET /v1/relay`), opens a mutual-TLS TCP connection there (the device certificate, the vendor CA as the only
  trust anchor, through the site's proxy by HTTP CONNECT when `[portal] proxy_url` is set), names the session in one
  line (`SERVICEGATE-RELAY/1 <session> <task> <password>`, docs/protocol.md), and pipes bytes both ways.
- **View-only is enforced here**, whatever x11vnc does: the engineer's half of the stream goes through
  `agent.rfb.ClientFilter`, which drops key, pointer and clipboard messages until the technologist allows control
  in the banner. Control is possible only in a session with full access (examinations blocked: nobody scans while
  a remote hand moves the console's mouse); otherwise x11vnc itself runs `-viewonly` too.
- **Idle.** Sharing ends after `[screen] idle_timeout_min` without a key or pointer event from the engineer;
  screen-update requests do not count.
- **The end**, whatever causes it (the task ended, the engineer's viewer or the portal went away, idle, a stream
  the filter cannot follow), closes both connections and stops the task; the agent records `screen_share_ended`
  with the bytes each way, the engineer's input events and the duration.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import secrets
import socket
import ssl
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.rfb import ClientFilter, RfbError

log = logging.getLogger("servicegate.screen")

PASSWORD_LENGTH = 8  # what VNC authentication uses of a password (DES): one-time, and reachable only by the relay
HANDSHAKE = "SERVICEGATE-RELAY/1"
ANSWER_TIMEOUT_S = 10.0
LISTEN_TIMEOUT_S = 20.0  # x11vnc must listen within this time after the task started
CHUNK = 64 * 1024
ACTIVITY_EVERY_S = 10.0  # the engineer's input keeps the session from its idle timeout; told at most this often

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RelayRefused(Exception):
    """The portal (or the way to it) refused the relay: the message says why."""


def new_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH))


def free_loopback_port() -> int:
    """A port on 127.0.0.1 nobody listens on now (x11vnc takes it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stats:
    started: float
    to_portal: int = 0  # bytes of the console's screen
    from_portal: int = 0  # bytes of the engineer's viewer (after the filter)
    inputs: int = 0  # the engineer's key and pointer events (forwarded or dropped)
    dropped: int = 0  # messages dropped while view-only

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"bytes_to_portal": self.to_portal, "bytes_from_portal": self.from_portal, "inputs": self.inputs,
                "dropped": self.dropped, "duration_s": round(now - self.started, 1)}


# ---- the connection to the portal's relay -------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayAddress:
    host: str
    port: int
    server_name: str  # what the portal's certificate is checked against: the host of its URL


def tls_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The device's side of mutual TLS: the vendor CA as the only trust anchor, the device certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


async def open_relay(address: RelayAddress, context: ssl.SSLContext, proxy_url: str, line: str) -> Streams:
    """The TLS connection to the portal's relay (through the site's proxy when there is one), the handshake line
    sent and the portal's `OK` read. RelayRefused says why not; nothing stays open then."""
    writer: asyncio.StreamWriter | None = None
    try:
        if proxy_url:
            proxy = urlsplit(proxy_url)
            reader, stream = await asyncio.wait_for(asyncio.open_connection(
                proxy.hostname, proxy.port or 3128), ANSWER_TIMEOUT_S)
            writer = stream
            target = f"{address.host}:{address.port}"
            stream.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            status = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
            while (await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)).strip():
                pass  # the proxy's headers
            if not re.match(rb"HTTP/1\.[01] 200", status):
                raise RelayRefused(f"the site proxy {proxy.hostname} refused to connect to the relay {target}: "
                                   f"{status.decode(errors='replace').strip() or 'no answer'}")
            await stream.start_tls(context, server_hostname=address.server_name)
        else:
            reader, stream = await asyncio.wait_for(asyncio.open_connection(
                address.host, address.port, ssl=context, server_hostname=address.server_name), ANSWER_TIMEOUT_S)
            writer = stream
        stream.write(f"{line}\n".encode())
        answer = (await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)).decode(errors="replace").strip()
        if answer != "OK":
            raise RelayRefused(f"the portal refused the relay: {answer.removeprefix('REFUSED ') or 'no answer'}")
        return reader, stream
    except BaseException as exc:
        if writer is not None:
            writer.close()
        if isinstance(exc, (TimeoutError, OSError, ssl.SSLError)):
            raise RelayRefused(f"the portal's relay at {address.host}:{address.port} cannot be reached: "
                               f"{exc or type(exc).__name__}") from None
        raise


# ---- one share ----------------------------------------------------------------------------------------------------


@dataclass
class Share:
    """One screen share: what the relay needs, and what it measured."""

    task_id: str
    session_id: str
    engineer_id: str
    port: int
    password: str
    control_possible: bool
    filter: ClientFilter = field(default_factory=ClientFilter)
    stats: Stats = field(default_factory=lambda: Stats(time.monotonic()))
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    relaying: bool = False  # its relay runs (ScreenShares.start)
    connected: bool = False  # the relay reached the portal

    def details(self) -> dict[str, Any]:
        """What the audit records of a share name."""
        return {"task_id": self.task_id, "session_id": self.session_id, "engineer_id": self.engineer_id}

    def view(self, state: str) -> dict[str, Any]:
        """What the console shows (event `screen_changed`, op `screen_list`): never the password."""
        return {**self.details(), "state": state, "control": self.filter.control,
                "control_possible": self.control_possible}


class Relay:
    """Runs one share on the event loop: wait for x11vnc, connect to the portal, pipe, end."""

    def __init__(self, share: Share, connect: Callable[[str], Awaitable[Streams]], idle_s: float, *,
                 activity: Callable[[], None] = lambda: None, now: Callable[[], float] = time.monotonic,
                 check_s: float = 1.0) -> None:
        self.share, self.connect, self.idle_s = share, connect, idle_s
        self.activity, self.now, self.check_s = activity, now, check_s
        self.last_input = now()
        self._told = -ACTIVITY_EVERY_S

    async def run(self, on_connected: Callable[[], None]) -> str:
        """The reason the share ended. Whatever happens, both connections are closed at the end."""
        share = self.share
        opened: list[asyncio.StreamWriter] = []
        try:
            vnc = await self._vnc()
            if vnc is None:
                return "stopped before the screen was shared"
            opened.append(vnc[1])
            portal = await self.connect(f"{HANDSHAKE} {share.session_id} {share.task_id} {share.password}")
            opened.append(portal[1])
            share.connected = True
            share.stats.started = self.now()
            self.last_input = self.now()
            on_connected()
            return await self._pipe(vnc, portal)
        except RelayRefused as exc:
            return str(exc)
        finally:
            for writer in opened:
                writer.close()

    async def _vnc(self) -> Streams | None:
        """The connection to x11vnc, once it listens; None when the share was stopped meanwhile."""
        deadline = self.now() + LISTEN_TIMEOUT_S
        while not self.share.stop.is_set():
            try:
                return await asyncio.open_connection("127.0.0.1", self.share.port)
            except OSError:
                if self.now() > deadline:
                    raise RelayRefused(f"the VNC server did not listen on 127.0.0.1:{self.share.port} within "
                                       f"{LISTEN_TIMEOUT_S:.0f} s (the task's output says why)") from None
                await asyncio.sleep(0.1)
        return None

    async def _pipe(self, vnc: Streams, portal: Streams) -> str:
        jobs = {
            asyncio.create_task(self._viewer_to_server(portal[0], vnc[1])): "the engineer's viewer disconnected",
            asyncio.create_task(self._server_to_viewer(vnc[0], portal[1])): "the VNC server ended",
            asyncio.create_task(self._idle()): "idle",
            asyncio.create_task(self.share.stop.wait()): "stopped",
        }
        done, pending = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        finished = next(iter(done))
        problem = finished.exception()
        if isinstance(problem, RfbError):
            return f"the engineer's viewer sent what the relay cannot follow: {problem}"
        if isinstance(problem, (OSError, ssl.SSLError)):
            return f"the portal went away: {problem}"
        if problem is not None:
            raise problem
        return jobs[finished]

    async def _viewer_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        share = self.share
        while data := await reader.read(CHUNK):
            filtered = share.filter.feed(data)
            if filtered.inputs:
                self.last_input = self.now()
                if self.last_input - self._told >= ACTIVITY_EVERY_S:
                    self._told = self.last_input
                    self.activity()
            share.stats.inputs += filtered.inputs
            share.stats.dropped += filtered.dropped
            share.stats.from_portal += len(filtered.forward)
            if filtered.forward:
                writer.write(filtered.forward)
                await writer.drain()

    async def _server_to_viewer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(CHUNK):
            self.share.stats.to_portal += len(data)
            writer.write(data)
            await writer.drain()

    async def _idle(self) -> None:
        while self.now() - self.last_input < self.idle_s:
            await asyncio.sleep(self.check_s)


# ---- the shares of the agent --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hooks:
    """What the shares need of the agent core (agent.core.Agent gives its own methods); called on the event loop,
    where the agent's state lives."""

    started: Callable[[Share], None]  # the relay is connected: the engineer can look now
    ended: Callable[[Share, str, dict[str, Any]], None]  # reason, stats: recorded, and the task stopped
    activity: Callable[[str], None]  # the engineer's input in this session (at most every ACTIVITY_EVERY_S)


class ScreenShares:
    """The running shares, by task ID. The daemon sets `loop` and `connect` (the portal's relay through the link);
    without them (no daemon, no portal) a share cannot start."""

    def __init__(self, idle_s: float, hooks: Hooks) -> None:
        self.idle_s, self.hooks = idle_s, hooks
        self.shares: dict[str, Share] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connect: Callable[[str], Awaitable[Streams]] | None = None

    def prepare(self, task_id: str, session_id: str, engineer_id: str, *, control_possible: bool,
                display: str) -> dict[str, str]:
        """A new share's port and one-time password, as the share-screen task's environment."""
        if self.loop is None or self.connect is None:
            raise RelayRefused("the screen cannot be shared: the agent is not connected to its portal")
        share = Share(task_id, session_id, engineer_id, free_loopback_port(), new_password(), control_possible)
        self.shares[task_id] = share
        return {"SERVICEGATE_VNC_PORT": str(share.port), "SERVICEGATE_VNC_PASSWORD": share.password,
                "SERVICEGATE_VNC_VIEW_ONLY": "0" if control_possible else "1", "DISPLAY": display}

    def start(self, task_id: str) -> None:
        share, loop, connect = self.shares.get(task_id), self.loop, self.connect
        if share is None or loop is None or connect is None:
            return
        share.relaying = True
        relay = Relay(share, connect, self.idle_s, activity=lambda: self.hooks.activity(share.session_id))

        async def run() -> None:
            reason = "the agent stopped"
            try:
                reason = await relay.run(lambda: self.hooks.started(share))
            except Exception as exc:  # noqa: BLE001 - a share that fails must still end, recorded
                log.exception("screen share %s failed", task_id)
                reason = f"the relay failed: {type(exc).__name__}: {exc}"
            finally:  # also when the loop cancels it at the agent's stop
                self.shares.pop(task_id, None)
                self.hooks.ended(share, reason, share.stats.to_dict(time.monotonic()) if share.connected else {})

        def done(future: concurrent.futures.Future[None]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.error("screen share %s: its end could not be recorded: %s", task_id, future.exception())

        asyncio.run_coroutine_threadsafe(run(), loop).add_done_callback(done)

    def stop(self, task_id: str) -> None:
        """The task ended (End session, the kill switch, ...): the relay closes. Called on the event loop (the
        agent's state lives there); the share leaves `shares` when its relay has ended."""
        share = self.shares.get(task_id)
        if share is None:
            return
        if share.relaying:
            share.stop.set()
        else:  # its task never started
            del self.shares[task_id]

    def of_session(self, session_id: str) -> list[Share]:
        return [s for s in self.shares.values() if s.session_id == session_id]


def portal_connector(session: Any, portal_url: str, context: Callable[[], ssl.SSLContext],
                     proxy_url: str) -> Callable[[str], Awaitable[Streams]]:
    """How a relay reaches the portal: its relay address asked over the link's pinned session (a blocking call,
    in a worker thread), then `open_relay` with a TLS context made for this connection (the device certificate may
    have been renewed since the last one)."""
    server_name = urlsplit(portal_url).hostname or ""

    def address() -> RelayAddress:
        try:
            response = session.get(f"{portal_url.rstrip('/')}/v1/relay", timeout=ANSWER_TIMEOUT_S)
            response.raise_for_status()
            answer = response.json()
            return RelayAddress(str(answer["host"]), int(answer["port"]), server_name)
        except Exception as exc:  # noqa: BLE001 - requests' and the answer's errors alike: one message
            raise RelayRefused(f"the portal did not say where its relay is: {exc}") from None

    async def connect(line: str) -> Streams:
        return await open_relay(await asyncio.to_thread(address), context(), proxy_url, line)

    return connect
