"""The screen relay (agent.screen.Relay) between a VNC server on loopback and the portal, with real sockets on both
sides: a stand-in VNC server (an asyncio server that records what reaches it and sends a screen's bytes), and, for
the portal, the far end of a real TCP connection that the test holds (the relay's TLS and handshake line are
`open_relay`'s, tested against the real portal in tests/test_screen_sharing.py). The clock of the idle timeout is
the test's."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from agent.screen import Relay, RelayRefused, Share, Streams, free_loopback_port

VERSION = b"RFB 003.008\n"
HANDSHAKE = VERSION + bytes([2]) + b"r" * 16 + bytes([1])  # version, VNC authentication, its response, ClientInit
UPDATE = struct.pack(">BBHHHH", 3, 1, 0, 0, 1280, 800)  # FramebufferUpdateRequest: no input
KEY = struct.pack(">BBxxI", 4, 1, 0x61)  # KeyEvent: "a" down
POINTER = struct.pack(">BBHH", 5, 0, 10, 20)  # PointerEvent: a move


@dataclass
class VncServer:
    """Records what reaches it; sends `screen` to whoever connects."""

    screen: bytes = b"S" * 100_000
    received: bytearray = field(default_factory=bytearray)
    port: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.screen)
            await writer.drain()
            while data := await reader.read(65536):
                self.received += data
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.closed.set()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def vnc_server() -> AsyncIterator[VncServer]:
    server = VncServer()
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()


def scenario(body: Callable[[VncServer], Awaitable[None]]) -> Callable[[], None]:
    """A test run on a fresh event loop, with a stand-in VNC server."""

    def test() -> None:
        async def main() -> None:
            async with vnc_server() as vnc:
                await body(vnc)

        asyncio.run(main())

    test.__name__, test.__doc__ = body.__name__, body.__doc__
    return test


async def portal_pair() -> tuple[Streams, Streams]:
    """Both ends of a real loopback TCP connection: (what the relay gets, what the test plays the portal with)."""
    accepted: asyncio.Future[Streams] = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    relay_side = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    portal_side = await accepted
    server.close()
    return relay_side, portal_side


def share_for(vnc: VncServer, *, control_possible: bool = True) -> Share:
    return Share("t-1", "12345678", "eng-7", vnc.port, "Ab3dEf7h", control_possible)


def connector(relay_side: Streams, lines: list[str]) -> Callable[[str], Awaitable[Streams]]:
    async def connect(line: str) -> Streams:
        lines.append(line)
        return relay_side

    return connect


async def until(condition: Callable[[], object], timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


@scenario
async def test_view_only_passes_the_screen_and_drops_the_engineers_input(vnc: VncServer) -> None:
    relay_side, (portal_reader, portal_writer) = await portal_pair()
    lines: list[str] = []
    share = share_for(vnc)
    connected = asyncio.Event()
    relay = Relay(share, connector(relay_side, lines), idle_s=600)
    running = asyncio.create_task(relay.run(connected.set))
    screen = await asyncio.wait_for(portal_reader.readexactly(len(vnc.screen)), 10)
    assert screen == vnc.screen  # byte for byte, as the engineer's viewer gets it
    assert lines == ["SERVICEGATE-RELAY/1 12345678 t-1 Ab3dEf7h"]
    assert connected.is_set()

    portal_writer.write(HANDSHAKE + UPDATE + KEY + POINTER + UPDATE)
    await until(lambda: len(vnc.received) == len(HANDSHAKE) + 2 * len(UPDATE))
    assert bytes(vnc.received) == HANDSHAKE + UPDATE + UPDATE  # the key and the pointer never reached the server
    share.filter.control = True  # the technologist allows control (the banner)
    portal_writer.write(KEY + POINTER)
    await until(lambda: bytes(vnc.received).endswith(KEY + POINTER))

    portal_writer.close()  # the engineer's viewer goes away
    assert await asyncio.wait_for(running, 10) == "the engineer's viewer disconnected"
    assert await asyncio.wait_for(portal_reader.read(), 10) == b""
    await asyncio.wait_for(vnc.closed.wait(), 10)  # the VNC server's connection is closed too
    stats = share.stats.to_dict(share.stats.started)
    assert (stats["bytes_to_portal"], stats["inputs"], stats["dropped"]) == (len(vnc.screen), 4, 2)
    assert stats["bytes_from_portal"] == len(HANDSHAKE) + 2 * len(UPDATE) + len(KEY + POINTER)


@scenario
async def test_no_input_for_the_idle_time_ends_it_and_update_requests_do_not_count(vnc: VncServer) -> None:
    relay_side, (portal_reader, portal_writer) = await portal_pair()
    clock = Clock()
    told: list[float] = []
    share = share_for(vnc)
    relay = Relay(share, connector(relay_side, []), idle_s=600, now=clock, check_s=0.01,
                  activity=lambda: told.append(clock.now))
    running = asyncio.create_task(relay.run(lambda: None))
    await portal_reader.readexactly(len(vnc.screen))
    portal_writer.write(HANDSHAKE + KEY)
    await until(lambda: share.stats.inputs == 1)
    assert told == [1000.0]  # the session hears of the engineer's input (its own idle timer)
    clock.now += 590
    portal_writer.write(UPDATE * 50)  # the viewer keeps asking for updates: no input
    await until(lambda: bytes(vnc.received).endswith(UPDATE))
    clock.now += 11  # 601 s since the key
    assert await asyncio.wait_for(running, 10) == "idle"
    assert await asyncio.wait_for(portal_reader.read(), 10) == b""  # the engineer is disconnected
    portal_writer.close()


@scenario
async def test_input_keeps_it_going(vnc: VncServer) -> None:
    relay_side, (portal_reader, portal_writer) = await portal_pair()
    clock = Clock()
    share = share_for(vnc)
    relay = Relay(share, connector(relay_side, []), idle_s=600, now=clock, check_s=0.01)
    running = asyncio.create_task(relay.run(lambda: None))
    await portal_reader.readexactly(len(vnc.screen))
    portal_writer.write(HANDSHAKE)
    for seen in (1, 2, 3):
        clock.now += 500
        portal_writer.write(POINTER)
        await until(lambda seen=seen: share.stats.inputs == seen)  # type: ignore[misc]
    await asyncio.sleep(0.1)  # several idle checks at 1500 s since the start, 0 s since the last input
    assert not running.done()
    share.stop.set()  # the task ended: End session, the kill switch, the time limit
    assert await asyncio.wait_for(running, 10) == "stopped"
    assert await asyncio.wait_for(portal_reader.read(), 10) == b""
    portal_writer.close()


@scenario
async def test_a_viewer_the_filter_cannot_follow_ends_it(vnc: VncServer) -> None:
    relay_side, (portal_reader, portal_writer) = await portal_pair()
    relay = Relay(share_for(vnc), connector(relay_side, []), idle_s=600)
    running = asyncio.create_task(relay.run(lambda: None))
    await portal_reader.readexactly(len(vnc.screen))
    portal_writer.write(HANDSHAKE + bytes([251]) + b"\0" * 20)  # SetDesktopSize: not known to the filter
    reason = await asyncio.wait_for(running, 10)
    assert reason.startswith("the engineer's viewer sent what the relay cannot follow: ")
    assert "251" in reason
    portal_writer.close()


@scenario
async def test_a_refused_relay_and_a_server_that_never_listens_end_with_the_reason(vnc: VncServer) -> None:
    async def refused(line: str) -> Streams:
        raise RelayRefused("the portal refused the relay: session 12345678 is not active")

    share = share_for(vnc)
    assert await Relay(share, refused, idle_s=600).run(lambda: None) == \
        "the portal refused the relay: session 12345678 is not active"
    clock = Clock()
    nobody = Share("t-2", "12345678", "eng-7", free_loopback_port(), "Ab3dEf7h", True)  # nothing listens there
    waiting = asyncio.create_task(Relay(nobody, refused, idle_s=600, now=clock).run(lambda: None))
    await asyncio.sleep(0.3)
    clock.now += 21
    reason = await asyncio.wait_for(waiting, 10)
    assert reason.startswith("the VNC server did not listen on 127.0.0.1:")
