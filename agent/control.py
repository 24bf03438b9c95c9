"""The control API server: JSON lines over a Unix socket, authorised by the caller's peer credentials.

The message format is in `agent.protocol`; `docs/control-api.md` is the reference for client authors.

Who the caller is comes from SO_PEERCRED, read once when the connection is accepted: the kernel
vouches for it, so no password or token is exchanged. Roles are derived from the uid and the
groups of that uid (`RoleMap`), looked up on every new connection so that a group change made by
site IT takes effect on the next connection without restarting the agent.

Robustness is the point of this module: a local client, malicious or just buggy, must never be
able to stop the agent from answering the kill switch. Hence:

- a request line is read with a StreamReader limit, so an oversized line is refused
  (`too_large`, then the connection is closed) without ever being buffered whole;
- a request line, once started, must be complete within `request_timeout_s` (slow-loris clients
  are cut off), but an idle connection between requests may stay open: the consent UI keeps one;
- replies that the client does not read within `request_timeout_s` close the connection;
- each uid may hold at most `max_connections_per_uid` connections, so one user cannot exhaust the
  agent's file descriptors and lock the technologist out of the kill switch;
- a watcher that does not keep up with events is disconnected rather than slowing `publish`;
- every exception from a handler is answered as `internal` and logged; the server carries on;
- a connection's requests are answered one at a time, and the server yields to the other
  connections after each one: a client that pipelines thousands of requests is served in turn
  with everyone else instead of all at once (reading from a full buffer and writing to a socket
  that is not full never suspend, so without the explicit yield nothing else would run);
- the operations named in `offload` (the daemon passes those that read a year of audit log, wait for the
  portal or de-identify a study) run in a worker thread, so nothing else waits behind them. The kill switch
  (`kill`, which waits out its grace period) runs in a pool of its own: it never queues behind them.
  Everything else runs on the loop's thread, so the agent's core sees one call at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import stat
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agent
from agent import protocol
from agent.errors import ConfigError, ServiceGateError
from agent.protocol import EVENTS, MAX_REQUEST_BYTES, OPERATIONS, SUPPORTED_VERSIONS, MessageError, Request, Role
from agent.roles import Caller, RoleMap

log = logging.getLogger("servicegate.control")

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

# Worker threads for offloaded operations. Two: a second `audit_export` need not wait for a first,
# and more would only compete with the loop's thread for the GIL while the kill switch is pressed.
OFFLOAD_WORKERS = 2
URGENT = frozenset({"kill"})  # offloaded to a pool of their own, when offloaded at all
URGENT_WORKERS = 4  # the kill switch pressed at the console, by the CLI and by SIGUSR1 at once: none waits

# Operations the server answers itself; they cannot be offloaded.
_BUILT_IN = frozenset({"hello", "watch"})


Handler = Callable[[Request, Caller], Any]
"""Answers one request: returns a JSON-able result or raises ServiceGateError."""


@dataclass(eq=False)
class _Watcher:
    caller: Caller
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[bytes]
    dropped: bool = False


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    uid: int | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class _CloseConnection(Exception):
    """The connection is finished (EOF, timeout, oversized line); not an error of the server."""


class ControlServer:
    """Serves the control API on a Unix socket until `stop`.

    `handler` is called synchronously for every operation except `hello` and `watch`, on the event
    loop's thread, so the agent's core sees one call at a time and needs no locking. The operations
    in `offload` are the exception: their handler runs (and its result is encoded) in one of the
    server's own OFFLOAD_WORKERS threads, concurrently with the loop, so it must only touch what is
    safe to use from another thread (the audit files, not the core's state). On one connection,
    replies still come in the order of the requests. `publish` may be called from any thread.
    """

    def __init__(self, socket_path: Path, handler: Handler, role_map: RoleMap, *, request_timeout_s: float = 10,
                 on_denied: Callable[[Caller, str], None] | None = None, agent_version: str = agent.__version__,
                 offload: frozenset[str] = frozenset(), max_connections_per_uid: int = 128,
                 watch_queue_size: int = 256) -> None:
        not_offloadable = sorted(name for name in offload if name not in OPERATIONS or name in _BUILT_IN)
        if not_offloadable:
            raise ValueError(f"cannot offload {', '.join(not_offloadable)}: only operations answered by the "
                             f"handler can run in a worker thread, not {sorted(_BUILT_IN)} or unknown names")
        self.socket_path = socket_path
        self._handler = handler
        self._role_map = role_map
        self._request_timeout_s = request_timeout_s
        self._on_denied = on_denied
        self._agent_version = agent_version
        self._offload = offload
        self._offload_pool: ThreadPoolExecutor | None = None
        self._urgent_pool: ThreadPoolExecutor | None = None
        self._max_connections_per_uid = max_connections_per_uid
        self._watch_queue_size = watch_queue_size
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket_inode: int | None = None
        self._connections: set[_Connection] = set()
        self._per_uid: dict[int, int] = {}
        self._watchers: set[_Watcher] = set()

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        path = self.socket_path
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o755)
            # The service runs with UMask=0077; without this the directory would be 0700 and no
            # console user could reach the socket inside it.
            path.parent.chmod(0o755)
        await self._remove_stale_socket()
        self._loop = asyncio.get_running_loop()
        if self._offload:
            # Our own threads, not the loop's default executor: a long export must not hold up the
            # user-database look-ups that every new connection makes there.
            self._offload_pool = ThreadPoolExecutor(OFFLOAD_WORKERS, thread_name_prefix="servicegate-offload")
            self._urgent_pool = ThreadPoolExecutor(URGENT_WORKERS, thread_name_prefix="servicegate-urgent")
        self._server = await asyncio.start_unix_server(self._serve, path=str(path), limit=MAX_REQUEST_BYTES)
        # Everyone may connect: authorisation is by peer credentials and roles, per operation. A
        # file mode cannot say "root, or any of three groups", and a user without a role should get
        # a permission_denied that names the group to ask for, not a bare EACCES from connect().
        path.chmod(0o666)
        self._socket_inode = path.stat().st_ino
        log.info("control API listening on %s", path)

    async def _remove_stale_socket(self) -> None:
        path = self.socket_path
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ConfigError(f"{path} exists and is not a socket, so the control API cannot listen there: "
                              "remove it, or set [paths] control_socket to another path")
        try:
            async with asyncio.timeout(2):
                _reader, writer = await asyncio.open_unix_connection(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            # Left behind by an agent that did not shut down cleanly: nobody answers on it.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        except (OSError, TimeoutError):
            pass  # somebody is there but busy: as good as answering
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        raise ServiceGateError(f"another agent is already answering on {path}: stop it first "
                               "(`systemctl stop servicegate`), or set [paths] control_socket to another path")

    async def stop(self) -> None:
        """Close the listener and every connection, then remove the socket file."""
        if self._server is not None:
            self._server.close()
        for watcher in list(self._watchers):
            watcher.dropped = True
        self._watchers.clear()
        connections = list(self._connections)
        for connection in connections:
            connection.writer.transport.abort()
        # Aborting ends each conversation by itself (its reads see EOF); cancel only what is still
        # busy after that, such as one waiting for an offloaded handler.
        tasks = {c.task for c in connections if c.task is not None and c.task is not asyncio.current_task()}
        if tasks:
            _done, busy = await asyncio.wait(tasks, timeout=2)
            for task in busy:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
        if self._offload_pool is not None:
            # Without waiting: a handler still working finishes in its thread and its result is dropped.
            self._offload_pool.shutdown(wait=False, cancel_futures=True)
            self._offload_pool = None
        if self._urgent_pool is not None:
            self._urgent_pool.shutdown(wait=False, cancel_futures=True)
            self._urgent_pool = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._unlink_socket()
        self._loop = None

    def _unlink_socket(self) -> None:
        # Only our own socket: a second agent started by mistake must not delete the first one's.
        try:
            if self._socket_inode is not None and self.socket_path.lstat().st_ino == self._socket_inode:
                self.socket_path.unlink()
        except FileNotFoundError:
            pass
        self._socket_inode = None

    # -- events ----------------------------------------------------------------------------------

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send an event to every watcher. Never blocks; callable from any thread."""
        try:
            message = protocol.event_message(event, data)
        except (TypeError, ValueError):
            # An event is a side channel: a bug in its data must not fail the action that caused it.
            log.exception("event %r could not be encoded and was not sent", event)
            return
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._fan_out(message)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is watching
                loop.call_soon_threadsafe(self._fan_out, message)

    def _fan_out(self, message: bytes) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("dropping watcher %s (pid %d): it does not read its events", watcher.caller.user,
                            watcher.caller.pid)
                self._drop(watcher)

    def _drop(self, watcher: _Watcher) -> None:
        watcher.dropped = True
        self._watchers.discard(watcher)
        # abort, not close: close would wait to flush what the watcher is not reading.
        watcher.writer.transport.abort()

    # -- connections -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer=writer, task=asyncio.current_task())
        self._connections.add(connection)
        try:
            await self._converse(connection, reader, writer)
        except (_CloseConnection, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels a conversation, and the task ends here anyway. Not re-raised because
            # Python 3.11's start_unix_server logs a cancelled connection task as an error.
            pass
        except Exception:
            # Nothing a client sends should get here; if something does, lose the connection, not the server.
            log.exception("control connection failed")
        finally:
            self._connections.discard(connection)
            if connection.uid is not None:
                self._per_uid[connection.uid] -= 1
                if not self._per_uid[connection.uid]:
                    del self._per_uid[connection.uid]
            await _close(writer)

    async def _converse(self, connection: _Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        connection.uid = uid
        self._per_uid[uid] = self._per_uid.get(uid, 0) + 1
        if self._per_uid[uid] > self._max_connections_per_uid:
            log.warning("uid %d has more than %d control connections; refusing another", uid,
                        self._max_connections_per_uid)
            await self._send(writer, protocol.error_message(
                None, "too_many_connections",
                f"this user already has {self._max_connections_per_uid} connections open to the agent; "
                "close some (is a program stuck?) and try again"))
            return
        # The user database may be remote (LDAP, SSSD): look it up off the loop.
        caller = await asyncio.get_running_loop().run_in_executor(None, self._role_map.caller, pid, uid, gid)
        while True:
            line = await self._read_line(reader, writer)
            try:
                request = protocol.parse_request(line)
            except MessageError as exc:
                await self._send(writer, protocol.error_message(exc.request_id, exc.code, str(exc)))
            else:
                needed = OPERATIONS[request.op].role
                if not protocol.allowed(caller.roles, needed):
                    await self._send(writer, self._deny(request, caller, needed))
                elif request.op == "hello":
                    await self._send(writer, self._hello(request, caller))
                elif request.op == "watch":
                    await self._watch(request, caller, reader, writer)
                    return
                else:
                    await self._send(writer, await self._call_handler(request, caller))
            # Let the other connections in before this one's next request. When that request is
            # already buffered and the reply fit into the socket, nothing above has suspended, and
            # a client pipelining thousands of requests would be served all at once while the
            # kill switch waited.
            await asyncio.sleep(0)

    async def _read_line(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """The next request line without its newline; raises _CloseConnection when the connection is done."""
        # Waiting for the first byte has no deadline (an idle client is fine); the rest of the line has.
        first = await reader.read(1)
        if not first:
            raise _CloseConnection
        if first == b"\n":
            return b""
        try:
            async with asyncio.timeout(self._request_timeout_s):
                rest = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            await self._refuse_too_large(writer)
        except TimeoutError:
            log.info("closing a control connection: request line not complete within %s s",
                     self._request_timeout_s)
            await self._send(writer, protocol.error_message(
                None, "timeout", f"the request line was not complete within {self._request_timeout_s} s"))
            raise _CloseConnection from None
        line = first + rest[:-1]
        if len(line) > MAX_REQUEST_BYTES:
            await self._refuse_too_large(writer)
        return line

    async def _refuse_too_large(self, writer: asyncio.StreamWriter) -> None:
        await self._send(writer, protocol.error_message(
            None, "too_large", f"a request line may be at most {MAX_REQUEST_BYTES} bytes; the connection is closed"))
        raise _CloseConnection

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        try:
            async with asyncio.timeout(self._request_timeout_s):
                await writer.drain()
        except TimeoutError:
            raise _CloseConnection from None  # the client does not read its replies

    def _deny(self, request: Request, caller: Caller, needed: Role) -> bytes:
        log.info("denied %r to %s (uid %d, pid %d)", request.op, caller.user, caller.uid, caller.pid)
        if self._on_denied is not None:
            try:
                self._on_denied(caller, request.op)
            except Exception:
                # The caller is refused either way; a failing audit hook must not turn that into a crash.
                log.exception("on_denied failed for %r by %s", request.op, caller.user)
        return protocol.error_message(
            request.id, "permission_denied",
            f"user '{caller.user}' may not use `{request.op}`: it needs the {needed} role; "
            f"{self._role_map.how_to_get(needed)}")

    async def _call_handler(self, request: Request, caller: Caller) -> bytes:
        pool = self._urgent_pool if request.op in URGENT else self._offload_pool
        if pool is not None and request.op in self._offload:
            return await asyncio.get_running_loop().run_in_executor(pool, self._answer, request, caller)
        return self._answer(request, caller)

    def _answer(self, request: Request, caller: Caller) -> bytes:
        """The reply line to a handler's operation. Encoding is part of it: a year's export is megabytes of JSON,
        and for an offloaded operation that work belongs in the worker thread too."""
        try:
            return protocol.ok_message(request.id, self._handler(request, caller))
        except ServiceGateError as exc:
            return protocol.error_message(request.id, exc.code, str(exc))
        except Exception:
            log.exception("internal error answering %r for %s (pid %d)", request.op, caller.user, caller.pid)
            return protocol.error_message(
                request.id, "internal", f"the agent failed on `{request.op}` (a bug; details are in the agent's log)")

    def _hello(self, request: Request, caller: Caller) -> bytes:
        offered = request.args.get("versions")
        version = protocol.PROTOCOL_VERSION
        if offered is not None:
            if not isinstance(offered, list) or not all(isinstance(v, int) for v in offered):
                return protocol.error_message(request.id, "bad_request", "'versions' must be a list of integers")
            # `type(v) is int`: true and false are ints to Python (true == 1), but they are not versions.
            common = SUPPORTED_VERSIONS.intersection(v for v in offered if type(v) is int)
            if not common:
                return protocol.error_message(
                    request.id, "unsupported_version",
                    f"this agent speaks protocol versions {sorted(SUPPORTED_VERSIONS)}, the client "
                    f"{json.dumps(offered)}; update the client or the agent so that they share one")
            version = max(common)
        return protocol.ok_message(request.id, {
            "protocol": version,
            "agent_version": self._agent_version,
            "user": caller.user,
            "roles": sorted(caller.roles),
        })

    async def _watch(self, request: Request, caller: Caller, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        """Carry events until the client goes away or falls behind. Anything the client sends is ignored."""
        watcher = _Watcher(caller, writer, asyncio.Queue(self._watch_queue_size))
        # Subscribed before the reply goes out, so that nothing published after the client has the
        # reply is missed; events queued meanwhile follow the reply.
        self._watchers.add(watcher)
        try:
            await self._send(writer, protocol.ok_message(request.id, {"events": sorted(EVENTS)}))
        except BaseException:
            self._watchers.discard(watcher)
            raise
        pump = asyncio.create_task(self._pump(watcher))
        listen = asyncio.create_task(_discard_until_eof(reader))
        try:
            await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._watchers.discard(watcher)
            for task in (pump, listen):
                task.cancel()
            await asyncio.gather(pump, listen, return_exceptions=True)

    async def _pump(self, watcher: _Watcher) -> None:
        with contextlib.suppress(ConnectionError):
            while not watcher.dropped:
                message = await watcher.queue.get()
                watcher.writer.write(message)
                await watcher.writer.drain()


async def _discard_until_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully so a last reply is flushed, but never wait long for a client that does not read."""
    writer.close()
    try:
        async with asyncio.timeout(1):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()
