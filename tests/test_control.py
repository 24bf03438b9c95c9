"""The control API against a real Unix socket: a real ControlServer on an asyncio loop in a thread,
real clients and misbehaving raw sockets. Roles, and real users and groups: test_control_roles.py."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import pwd
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import agent
from agent import protocol
from agent.client import Client
from agent.control import ControlServer
from agent.errors import (
    AgentUnreachableError,
    ConfigError,
    NotFoundError,
    ProtocolError,
    RefusedError,
    ServiceGateError,
    UsageError,
)
from agent.protocol import MAX_REQUEST_BYTES, Request
from agent.roles import Caller
from tests.control_server import TIMEOUT_S, RunningServer, own_role_map


@pytest.fixture
def server(start: Callable[..., RunningServer]) -> RunningServer:
    return start()


def raw(server: RunningServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(server.path))
    return sock


def read_message(sock: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    message = json.loads(data)
    assert isinstance(message, dict)
    return message


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def wait_for(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- round trip, handshake, errors -------------------------------------------------------------------


def test_round_trip_and_hello(server: RunningServer) -> None:
    with Client(server.path) as client:
        hello = client.connect()
        assert hello == {"protocol": 1, "agent_version": agent.__version__,
                         "user": pwd.getpwuid(os.getuid()).pw_name, "roles": ["admin"]}
        assert client.call("access_set", level="full") == {"op": "access_set", "args": {"level": "full"},
                                                            "user": hello["user"]}
        assert client.call("access_show")["op"] == "access_show"  # several requests on one connection


def test_socket_file_and_folder(server: RunningServer) -> None:
    assert stat.S_ISSOCK(server.path.stat().st_mode)
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o666
    assert stat.S_IMODE(server.path.parent.stat().st_mode) == 0o755
    server.stop()
    assert not server.path.exists()


@pytest.mark.parametrize(("op", "args", "cls", "code", "text"), [
    ("session_decline", {}, RefusedError, "refused", "not waiting for consent"),
    ("session_end", {"session_id": "S-1"}, NotFoundError, "not_found", "no session 'S-1'"),
    ("audit_verify", {}, ServiceGateError, "internal", "`audit_verify`"),
    ("audit_export", {}, ServiceGateError, "internal", "`audit_export`"),
])
def test_errors_are_raised_as_their_classes(server: RunningServer, caplog: pytest.LogCaptureFixture, op: str,
                                            args: dict[str, Any], cls: type[Exception], code: str,
                                            text: str) -> None:
    with Client(server.path) as client:
        with pytest.raises(cls, match=text) as info:
            client.call(op, **args)
        assert type(info.value) is cls
        assert getattr(info.value, "code", None) == code
        assert client.call("status")["op"] == "status"  # the server and the connection carry on
    if code == "internal":
        assert any(r.name == "servicegate.control" and r.exc_info for r in caplog.records)


def test_unsupported_versions(server: RunningServer) -> None:
    sock = raw(server)
    sock.sendall(protocol.request_message(1, "hello", {"versions": [7, 8]}))
    assert read_message(sock)["error"]["code"] == "unsupported_version"
    sock.sendall(b'{"v": 2, "id": 2, "op": "hello", "args": {}}\n')
    assert read_message(sock) == {"id": 2, "ok": False, "error": {
        "code": "unsupported_version", "message": "protocol version 2 is not supported; this agent speaks [1]"}}
    sock.close()
    with Client(server.path) as client, pytest.raises(ProtocolError, match=r"protocol versions \[1\]"):
        client.call("hello", versions=[9])


def test_booleans_are_not_versions(server: RunningServer) -> None:
    # true == 1 in Python; offering [true] must not settle on "protocol": true.
    sock = raw(server)
    sock.sendall(protocol.request_message(1, "hello", {"versions": [True]}))
    reply = read_message(sock)
    assert reply["error"]["code"] == "unsupported_version"
    assert "the client [true]" in reply["error"]["message"]
    sock.sendall(protocol.request_message(2, "hello", {"versions": [False, True, 1]}))
    result = read_message(sock)["result"]
    assert result["protocol"] == 1
    assert type(result["protocol"]) is int
    sock.close()


@pytest.mark.parametrize(("line", "request_id", "text"), [
    (b'{"v": 1, "id": 5, "op": "hello"', None, "not a JSON object"),
    (b"[1, 2, 3]", None, "must be a JSON object"),
    (b"\xff\xfe\x00\x01 binary junk", None, "not a JSON object"),
    (b"", None, "not a JSON object"),
    (b'{"v": 1, "op": "hello"}', None, "'id' must be an integer"),
    (b'{"v": 1, "id": 6, "op": "format_disk"}', 6, "unknown operation 'format_disk'"),
    (b'{"v": 1, "id": 7, "op": "status", "args": [1]}', 7, "'args' must be a JSON object"),
    (b"[" * 30000 + b"]" * 30000, None, "nested"),  # deeper than Python's recursion limit
])
def test_bad_lines_are_answered_and_the_connection_survives(server: RunningServer, caplog: pytest.LogCaptureFixture,
                                                            line: bytes, request_id: int | None, text: str) -> None:
    sock = raw(server)
    sock.sendall(line + b"\n")
    reply = read_message(sock)
    assert reply["id"] == request_id
    assert reply["error"]["code"] == "bad_request"
    assert text in reply["error"]["message"]
    sock.sendall(protocol.request_message(8, "hello"))
    assert read_message(sock)["ok"] is True
    sock.close()
    no_errors_logged(caplog)


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    sock = raw(server)
    sock.sendall(b"".join(protocol.request_message(i, "kill", {"text": str(i)}) for i in range(1, 21)))
    replies = [read_message(sock) for _ in range(20)]
    assert [(r["id"], r["result"]["args"]["text"]) for r in replies] == [(i, str(i)) for i in range(1, 21)]
    sock.close()


def test_a_pipelining_client_does_not_hold_up_another(start: Callable[..., RunningServer], socket_dir: Path) -> None:
    sequence = itertools.count(1)
    held, release = threading.Event(), threading.Event()

    def handler(request: Request, caller: Caller) -> Any:
        if request.op == "access_show":  # the pipeline's first request holds the loop until the rest has arrived
            held.set()
            release.wait(10)
        return {"seq": next(sequence)}  # the order in which the server handled the requests

    server = start(handler=handler)
    pipeline, other = raw(server), raw(server)
    for sock in (pipeline, other):  # both conversations are past their handshake
        sock.sendall(protocol.request_message(0, "hello"))
        assert read_message(sock)["ok"] is True
    pipeline.sendall(protocol.request_message(1, "access_show"))
    assert held.wait(5)
    # Queued while the loop is held: 1999 requests in the pipeline, then one on the other connection.
    pipeline.sendall(b"".join(protocol.request_message(i, "status") for i in range(2, 2001)))
    pipeline.shutdown(socket.SHUT_WR)
    other.sendall(protocol.request_message(1, "session_list"))
    # `cat` reads the pipeline's replies as fast as the server writes them (a thread of this process would
    # compete with the server's loop for the GIL): a full socket would make the server wait, and so yield.
    pipeline.setblocking(True)  # for cat: a socket with a timeout is non-blocking underneath
    with (socket_dir / "replies").open("wb") as sink:
        reader = subprocess.Popen(["cat"], stdin=pipeline.fileno(), stdout=sink)
    try:
        release.set()
        answer = read_message(other)
        assert reader.wait(10) == 0
    finally:
        reader.kill()
        reader.wait()
    replies = [json.loads(line) for line in (socket_dir / "replies").read_bytes().splitlines()]
    assert [r["id"] for r in replies] == list(range(1, 2001))
    assert answer["result"]["seq"] < replies[-1]["result"]["seq"]
    for sock in (pipeline, other):
        sock.close()


def test_an_offloaded_operation_does_not_hold_up_the_others(start: Callable[..., RunningServer]) -> None:
    entered, release = threading.Event(), threading.Event()
    threads: dict[str, str] = {}

    def handler(request: Request, caller: Caller) -> Any:
        threads[request.op] = threading.current_thread().name
        if request.op == "audit_verify":
            entered.set()
            release.wait(10)
            return {"intact": True}
        return {"op": request.op}

    server = start(handler=handler, offload=frozenset({"audit_verify", "audit_export"}))
    busy = raw(server)
    try:
        busy.sendall(protocol.request_message(1, "audit_verify") + protocol.request_message(2, "status"))
        assert entered.wait(5)
        with Client(server.path) as client:
            assert client.call("kill") == {"op": "kill"}  # while audit_verify still works
        busy.setblocking(False)
        with pytest.raises(BlockingIOError):
            busy.recv(1)  # nothing yet: `status` waits behind `audit_verify` on its connection
        busy.settimeout(5)
    finally:
        release.set()
    assert read_message(busy) == {"id": 1, "ok": True, "result": {"intact": True}}
    assert read_message(busy) == {"id": 2, "ok": True, "result": {"op": "status"}}
    busy.close()
    assert threads["audit_verify"].startswith("servicegate-offload")
    assert threads["kill"] == threads["status"] == server.thread.name  # the loop's thread


def test_only_handler_operations_can_be_offloaded(socket_dir: Path) -> None:
    for names in ({"watch"}, {"hello"}, {"audit_verify", "format_disk"}):
        with pytest.raises(ValueError, match="cannot offload"):
            ControlServer(socket_dir / "control.sock", lambda request, caller: None, own_role_map(),
                          offload=frozenset(names))


@pytest.mark.parametrize("size", [MAX_REQUEST_BYTES + 10, 4 * 1024 * 1024])
def test_oversized_request_is_refused_and_closed(server: RunningServer, caplog: pytest.LogCaptureFixture,
                                                 size: int) -> None:
    sock = raw(server)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        # The server stops reading long before 4 MiB and hangs up: sending the rest then fails.
        sock.sendall(protocol.request_message(1, "status", {"padding": "x" * size}))
    data = read_until_closed(sock)
    sock.close()
    reply = json.loads(data.split(b"\n")[0])
    assert reply["error"]["code"] == "too_large"
    assert data.count(b"\n") == 1  # nothing after it: the connection was closed
    with Client(server.path) as client:
        assert client.call("status")["op"] == "status"
    no_errors_logged(caplog)


def test_largest_allowed_request_is_served(server: RunningServer) -> None:
    prefix = protocol.request_message(1, "kill", {"text": ""})[:-1]
    line = prefix[:-3] + b"x" * (MAX_REQUEST_BYTES - len(prefix)) + prefix[-3:]
    assert len(line) == MAX_REQUEST_BYTES
    sock = raw(server)
    sock.sendall(line + b"\n")
    assert read_message(sock)["ok"] is True
    sock.close()


def test_slow_client_is_closed_but_idle_client_is_not(server: RunningServer) -> None:
    idle, slow = raw(server), raw(server)
    started = time.monotonic()
    slow.sendall(b'{"v": 1, "id": 1, "op": ')
    data = read_until_closed(slow)
    elapsed = time.monotonic() - started
    assert TIMEOUT_S * 0.8 < elapsed < TIMEOUT_S + 3
    assert json.loads(data)["error"]["code"] == "timeout"
    idle.sendall(protocol.request_message(2, "hello"))  # idle for longer than the timeout, still served
    assert read_message(idle)["ok"] is True
    for sock in (idle, slow):
        sock.close()


def test_clients_that_vanish(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(10):
        sock = raw(server)
        sock.sendall(b'{"v": 1, "id": 1, "op": "sta')  # mid-line
        sock.close()
        sock = raw(server)  # before reading a large reply
        sock.sendall(protocol.request_message(1, "kill", {"text": "y" * 60000}))
        sock.close()
        sock = raw(server)  # right after connecting
        sock.close()
    wait_for(lambda: server.server.connection_count == 0)
    with Client(server.path) as client:
        assert client.call("status")["op"] == "status"
    no_errors_logged(caplog)


def test_fifty_concurrent_clients(server: RunningServer) -> None:
    barrier = threading.Barrier(50)

    def session(n: int) -> list[int]:
        with Client(server.path) as client:
            client.connect()
            barrier.wait(10)
            return [int(client.call("kill", text=str(n))["args"]["text"]) for _ in range(5)]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(session, range(50)))
    assert results == [[n] * 5 for n in range(50)]
    wait_for(lambda: server.server.connection_count == 0)


def test_connections_per_uid_are_limited(start: Callable[..., RunningServer]) -> None:
    server = start(max_connections_per_uid=3)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(Client(server.path)) for _ in range(3)]
        for client in clients:
            client.connect()
        for _ in range(10):  # the refusal may arrive before or after the client's hello is sent
            with Client(server.path) as fourth, pytest.raises(ServiceGateError, match="already has 3") as info:
                fourth.connect()
            assert info.value.code == "too_many_connections"
        clients[0].close()
        wait_for(lambda: server.server.connection_count == 2)
        with Client(server.path) as fourth:
            assert fourth.call("status")["op"] == "status"


# -- watch ---------------------------------------------------------------------------------------


def collect(events: Iterator[tuple[str, dict[str, Any]]]) -> tuple[list[tuple[str, dict[str, Any]]], threading.Thread]:
    received: list[tuple[str, dict[str, Any]]] = []
    thread = threading.Thread(target=lambda: received.extend(events), daemon=True)
    thread.start()
    return received, thread


def test_watch_receives_published_events(server: RunningServer) -> None:
    client = Client(server.path)
    received, thread = collect(client.watch())
    wait_for(lambda: server.server.watcher_count == 1)
    server.server.publish("access_changed", {"level": "full"})  # from another thread
    server.run(lambda: server.server.publish("session_changed", {"id": "S-1"}))  # from the loop's thread
    wait_for(lambda: len(received) == 2)
    assert received == [("access_changed", {"level": "full"}), ("session_changed", {"id": "S-1"})]
    client.close()  # ends the iterator in the other thread
    thread.join(5)
    assert not thread.is_alive()
    wait_for(lambda: server.server.watcher_count == 0)


def test_watcher_that_never_reads_is_dropped_without_blocking(server: RunningServer) -> None:
    stuck = raw(server)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(protocol.request_message(1, "watch"))
    assert read_message(stuck)["ok"] is True
    client = Client(server.path)
    received, thread = collect(client.watch())
    wait_for(lambda: server.server.watcher_count == 2)
    payload = {"text": "z" * 8192}

    def publish_batch() -> float:
        started = time.monotonic()
        for _ in range(50):
            server.server.publish("audit_appended", payload)
        return time.monotonic() - started

    sent = 0
    while server.server.watcher_count == 2:
        assert sent < 100_000, "the stuck watcher was never dropped"
        assert server.run(publish_batch) < 0.5  # publish never waits for a watcher
        sent += 50
        wait_for(lambda n=sent: len(received) == n)  # the reading watcher keeps up and gets everything
    assert server.server.watcher_count == 1
    assert len(read_until_closed(stuck)) < sent * 8300  # it got some, then the server hung up
    stuck.close()
    server.server.publish("access_changed", {"level": "no-access"})
    wait_for(lambda: len(received) == sent + 1)
    client.close()
    thread.join(5)


def test_stop_disconnects_everyone(start: Callable[..., RunningServer]) -> None:
    server = start()
    client = Client(server.path)
    client.connect()
    events = client.watch()
    server.stop()
    with pytest.raises(AgentUnreachableError):
        next(events)
    with pytest.raises(AgentUnreachableError):
        client.call("status")
    client.close()


# -- start: stale and live sockets ------------------------------------------------------------------


def test_stale_socket_is_replaced(socket_dir: Path, start: Callable[..., RunningServer]) -> None:
    path = socket_dir / "control.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()
    with pytest.raises(AgentUnreachableError, match=str(path)):
        Client(path).connect()
    server = start(path=path)
    with Client(server.path) as client:
        assert client.connect()["protocol"] == 1


def test_live_socket_or_other_file_is_not_replaced(socket_dir: Path, start: Callable[..., RunningServer]) -> None:
    first = start(path=socket_dir / "control.sock")
    with pytest.raises(ServiceGateError, match="already answering"):
        start(path=first.path)
    with Client(first.path) as client:
        assert client.call("status")["op"] == "status"
    (socket_dir / "file").write_text("not a socket")
    with pytest.raises(ConfigError, match="not a socket"):
        start(path=socket_dir / "file")


# -- client without an agent -------------------------------------------------------------------------


def test_client_without_agent(socket_dir: Path) -> None:
    with pytest.raises(AgentUnreachableError, match="systemctl status servicegate") as info:
        Client(socket_dir / "missing.sock").connect()
    assert str(socket_dir / "missing.sock") in str(info.value)
    assert info.value.exit_code == 4
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # listens, never answers
    mute.bind(str(socket_dir / "mute.sock"))
    mute.listen()
    with pytest.raises(AgentUnreachableError, match=r"did not answer `hello` within 0.2 s"):
        Client(socket_dir / "mute.sock", timeout_s=0.2).connect()
    mute.close()


def test_client_refuses_too_large_requests_itself(server: RunningServer) -> None:
    with Client(server.path) as client:
        with pytest.raises(UsageError, match="at most") as info:
            client.call("status", padding="x" * MAX_REQUEST_BYTES)
        assert info.value.code == "too_large"
        assert client.call("status")["op"] == "status"


def test_watch_closed_between_events_ends_cleanly(server: RunningServer) -> None:
    # close() from another thread may come while the watching thread is between two reads, not in recv().
    client = Client(server.path)
    events = client.watch()
    wait_for(lambda: server.server.watcher_count == 1)
    server.server.publish("access_changed", {"level": "full"})
    assert next(events) == ("access_changed", {"level": "full"})
    client.close()
    assert list(events) == []
