"""A real ControlServer for tests, shared by test_control.py (the protocol) and test_control_roles.py (roles).

The server runs on its own asyncio loop in a background thread and answers with `handler` below, or
with one a test passes to `start`.
tests/conftest.py loads this module as a plugin, so its `socket_dir` and `start` fixtures reach both.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.control import ControlServer, Handler
from agent.errors import NotFoundError, RefusedError
from agent.protocol import Request
from agent.roles import Caller, RoleMap

TIMEOUT_S = 0.3  # the servers' request timeout: short, because the slow-client test waits for it


def handler(request: Request, caller: Caller) -> Any:
    if request.op == "session_decline":
        raise RefusedError("this session is not waiting for consent")
    if request.op == "session_end":
        raise NotFoundError(f"no session {request.args.get('session_id')!r}")
    if request.op == "audit_verify":
        raise ValueError("a bug in the handler")
    if request.op == "audit_export":
        return {"not json": object()}
    return {"op": request.op, "args": request.args, "user": caller.user}


class RunningServer:
    """A ControlServer serving on its own event loop in a background thread."""

    def __init__(self, socket_path: Path, role_map: RoleMap, handler: Handler = handler, **kwargs: Any) -> None:
        self.denied: list[tuple[str, str]] = []
        self.server = ControlServer(socket_path, handler, role_map, request_timeout_s=TIMEOUT_S,
                                    on_denied=lambda caller, op: self.denied.append((caller.user, op)), **kwargs)
        self.path = socket_path
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self.thread.start()
        self._ready.wait(10)
        if self.error is not None:
            self.thread.join(10)
            raise self.error

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self.error = exc
            return
        finally:
            self._ready.set()
        await self._stop.wait()
        await self.server.stop()

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the server's loop thread and return its result."""
        async def call() -> Any:
            return fn()
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


def own_role_map(**groups: str) -> RoleMap:
    """Groups that do not exist, and the test process as admin: it may do everything."""
    names = {"console_group": "sg-no-such-console", "modality_group": "sg-no-such-modality",
             "viewer_group": "sg-no-such-viewer", **groups}
    return RoleMap(admin_uids=frozenset({os.getuid()}), **names)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Not tmp_path: it is 0700 (other users could not reach the socket) and long (AF_UNIX paths are short).
    directory = Path(tempfile.mkdtemp(prefix="sg-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start(socket_dir: Path) -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def start_server(role_map: RoleMap | None = None, path: Path | None = None, **kwargs: Any) -> RunningServer:
        """Start a server; keyword arguments go to RunningServer (`handler`) and ControlServer."""
        server = RunningServer(path or socket_dir / "run" / "control.sock", role_map or own_role_map(), **kwargs)
        servers.append(server)
        return server

    yield start_server
    for server in servers:
        server.stop()
