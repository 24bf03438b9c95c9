"""A plain client of the control API, for the CLI and the consent UI.

Blocking sockets, no asyncio, no Qt: the UI calls it from a worker thread and the CLI from its main
thread. It imports only the standard library, `agent.protocol` and `agent.errors`, so that the
consent UI can use it without pulling in the agent's core or its configuration.

    with Client(Path("/run/servicegate/control.sock")) as client:
        client.call("access_set", level="limited", until="2026-03-01T18:00:00Z")

Errors the agent answers are raised as the matching `agent.errors` class (`permission_denied` as
PermissionDeniedError, `not_found` as NotFoundError, ...), with the agent's message. Failing to
connect raises AgentUnreachableError (exit 4), except when the socket or its folder refuses this
user (EACCES, EPERM): that is PermissionDeniedError (exit 5), because the fix is a group, not a
restart. One Client may be shared between threads: calls are serialised. `watch` uses a
connection of its own.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from agent import protocol
from agent.errors import (
    ERROR_CLASSES,
    AgentUnreachableError,
    PermissionDeniedError,
    ProtocolError,
    ServiceGateError,
    UsageError,
)

_HINT = "Is the agent running? Check with `systemctl status servicegate`."


class _Connection:
    """One socket with a line buffer. Reads raise ServiceGateError subclasses, never OSError."""

    def __init__(self, socket_path: Path, timeout_s: float) -> None:
        self.socket_path = socket_path
        self.closed_by_us = False
        self._buffer = bytearray()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(str(socket_path))
        except FileNotFoundError:
            self._sock.close()
            raise AgentUnreachableError(f"cannot reach the ServiceGate agent: there is no socket at {socket_path}. "
                                        f"{_HINT}") from None
        except PermissionError:  # EACCES or EPERM: the agent may well be running, but not for this user
            self._sock.close()
            raise PermissionDeniedError(
                f"you may not connect to the ServiceGate agent: permission denied on its socket {socket_path} "
                f"or the folder {socket_path.parent}. Ask site IT to add you to the ServiceGate console or viewer "
                "group (servicegate-console or servicegate-viewer, unless configured otherwise)") from None
        except TimeoutError:
            self._sock.close()
            raise AgentUnreachableError(f"the ServiceGate agent at {socket_path} did not accept the connection "
                                        f"within {timeout_s} s. {_HINT}") from None
        except OSError as exc:
            self._sock.close()
            raise AgentUnreachableError(f"cannot reach the ServiceGate agent at {socket_path}: "
                                        f"{exc.strerror or exc}. {_HINT}") from None

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise self._lost(exc) from None

    def read_message(self, deadline: float | None) -> dict[str, Any]:
        """The next message; waits until `deadline` (time.monotonic()), or for ever when None."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return self._decode(line)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            try:
                # Inside the try: close() from another thread (ending a watch) may have closed the
                # socket since the last read, and then settimeout fails with EBADF too.
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise
            except OSError as exc:
                raise self._lost(exc) from None
            if not chunk:
                raise self._lost(None)
            self._buffer += chunk

    def _decode(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProtocolError(f"the agent at {self.socket_path} sent something that is not JSON: "
                                f"{line[:80]!r}") from None
        if not isinstance(message, dict):
            raise ProtocolError(f"the agent at {self.socket_path} sent a JSON value that is not an object")
        return message

    def _lost(self, exc: OSError | None) -> AgentUnreachableError:
        reason = f": {exc.strerror or exc}" if exc is not None else ""
        return AgentUnreachableError(f"the ServiceGate agent at {self.socket_path} closed the connection{reason}. "
                                     f"{_HINT}")

    def close(self) -> None:
        self.closed_by_us = True
        # shutdown wakes a thread blocked in recv() on this socket (a watch loop); close alone does not.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def _raise_error(message: dict[str, Any]) -> NoReturn:
    error = message.get("error")
    if not isinstance(error, dict):
        raise ProtocolError(f"the agent answered an error without details: {message!r}")
    code = str(error.get("code", "failed"))
    cls = ERROR_CLASSES.get(code, ServiceGateError)
    exc = cls(str(error.get("message", code)))
    exc.code = code  # keep the agent's own code (e.g. `internal`, `too_large`) for callers that need it
    raise exc


class Client:
    def __init__(self, socket_path: Path, timeout_s: float = 10) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.hello: dict[str, Any] | None = None  # the hello result, once connected
        self._connection: _Connection | None = None
        self._watches: list[_Connection] = []
        self._next_id = 1
        self._lock = threading.RLock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def connect(self) -> dict[str, Any]:
        """Connect and shake hands; returns the hello result (agent version, your user name and roles)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            connection = _Connection(self.socket_path, self.timeout_s)
            try:
                result = self._hello(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
            self.hello = result
            return result

    def call(self, op: str, **args: Any) -> Any:
        """Run one operation and return its result; raises the agent's error as a ServiceGateError subclass."""
        with self._lock:
            if self._connection is None:
                self.connect()
            connection = self._connection
            if connection is None:  # connect() either sets it or raises
                raise AgentUnreachableError(f"not connected to the agent at {self.socket_path}")
            try:
                return self._request(connection, op, args)
            except (AgentUnreachableError, ProtocolError):
                # The connection's state is unknown now (a late reply would be read as the next one's).
                connection.close()
                raise
            finally:
                if connection.closed_by_us:
                    self._connection = None

    def watch(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Subscribe to events on a connection of its own; returns an iterator of (event, data).

        The subscription is in place when this returns, so nothing published afterwards is missed.
        The iterator ends when `close` is called (from any thread); it raises AgentUnreachableError
        when the agent goes away.
        """
        connection = _Connection(self.socket_path, self.timeout_s)
        try:
            self._hello(connection)
            self._request(connection, "watch", {})
        except BaseException:
            connection.close()
            raise
        with self._lock:
            self._watches.append(connection)
        return self._events(connection)

    def _events(self, connection: _Connection) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            while True:
                try:
                    message = connection.read_message(None)
                except AgentUnreachableError:
                    if connection.closed_by_us:
                        return
                    raise
                name, data = message.get("event"), message.get("data")
                if isinstance(name, str) and isinstance(data, dict):
                    yield name, data
                elif message.get("ok") is False:
                    _raise_error(message)  # e.g. the agent dropped us for not keeping up
        finally:
            connection.close()
            with self._lock:
                if connection in self._watches:
                    self._watches.remove(connection)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            for connection in self._watches:
                connection.close()

    def _hello(self, connection: _Connection) -> dict[str, Any]:
        result = self._request(connection, "hello", {"versions": sorted(protocol.SUPPORTED_VERSIONS)})
        if not isinstance(result, dict):
            raise ProtocolError(f"the agent at {self.socket_path} answered the handshake with {result!r}")
        return result

    def _request(self, connection: _Connection, op: str, args: dict[str, Any]) -> Any:
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
        line = protocol.request_message(request_id, op, args)
        if len(line) - 1 > protocol.MAX_REQUEST_BYTES:
            # The agent would refuse it and hang up; say so without sending megabytes first.
            error = UsageError(f"the `{op}` request is {len(line) - 1} bytes; the agent accepts at most "
                               f"{protocol.MAX_REQUEST_BYTES}")
            error.code = "too_large"
            raise error
        deadline = time.monotonic() + self.timeout_s
        try:
            connection.send(line)
        except AgentUnreachableError as lost:
            # The agent may have said why before it hung up (too many connections): raise that instead.
            try:
                message = connection.read_message(deadline)
            except (ServiceGateError, TimeoutError):
                raise lost from None
            if message.get("ok") is False:
                _raise_error(message)
            raise
        while True:
            try:
                message = connection.read_message(deadline)
            except TimeoutError:
                raise AgentUnreachableError(
                    f"the ServiceGate agent at {self.socket_path} did not answer `{op}` within {self.timeout_s} s; "
                    f"it may still be working on it. {_HINT}") from None
            if "event" in message:
                continue
            reply_id = message.get("id")
            if reply_id is not None and reply_id != request_id:
                raise ProtocolError(f"the agent answered request {reply_id!r} while request {request_id} "
                                    f"(`{op}`) was waiting")
            if message.get("ok") is True:
                return message.get("result")
            if reply_id is None:
                # An error without an id concerns the connection itself (too_large, timeout, too many
                # connections): the agent hangs up after it.
                connection.close()
            _raise_error(message)


def wait_for_agent(socket_path: Path, *, timeout_s: float = 30, alive: Callable[[], bool] = lambda: True) -> bool:
    """Wait until an agent answers on `socket_path` (True), or `alive()` turns False (False: the process
    that was to start it has exited). Raises AgentUnreachableError when nobody answered in `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with Client(socket_path, timeout_s=2) as client:
                client.connect()
            return True
        except AgentUnreachableError:
            time.sleep(0.05)  # a real process coming up; polled, as its readiness has no other signal here
    raise AgentUnreachableError(f"no agent answered on {socket_path} within {timeout_s:.0f} s")
