"""The consent UI's line to the agent: `agent.client` off the GUI thread, results and events back on it.

The GUI thread never touches the socket, so a slow or absent agent never freezes a window. Three kinds
of thread, all plain Python threads (Qt delivers a signal emitted in another thread to its receivers
in the GUI thread, queued):

- one worker runs the ordinary calls, one after the other (a claim waiting for the portal delays the
  next call, not the UI);
- the kill switch (`urgent=True`) runs at once in a thread and on a connection of its own: it never
  waits behind another call;
- the watcher holds a `watch` subscription and passes every event on; when the agent goes away it
  says so (`available(False, why)`: the UI shows "remote service unavailable") and tries again every
  second until the agent is back (`available(True, "")`: the UI reads the state afresh).

The UI holds no authority: everything it may do, the agent checks again from its peer credentials.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from agent.client import Client
from agent.errors import AgentUnreachableError, ServiceGateError

RETRY_S = 1.0
CALL_TIMEOUT_S = 30.0  # a claim waits for the portal (its own timeout is 10 s)
KILL_TIMEOUT_S = 300.0  # the kill switch answers when all of it is done: grace period, restores

Done = Callable[[Any], None]
Failed = Callable[[ServiceGateError], None]


class AgentLink(QObject):
    agent_event = Signal(str, dict)  # an event of the agent (agent.protocol.EVENTS): name, data
    available = Signal(bool, str)  # the agent can be reached (True), or not and why
    _answer = Signal(object, object)  # (callback, argument): run on the GUI thread

    def __init__(self, socket_path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.socket_path = socket_path
        self._client = Client(socket_path, timeout_s=CALL_TIMEOUT_S)
        self._watch_client = Client(socket_path, timeout_s=CALL_TIMEOUT_S)
        self._calls: queue.Queue[tuple[str, dict[str, Any], Done, Failed] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run_calls, name="ui-calls", daemon=True),
                         threading.Thread(target=self._run_watch, name="ui-watch", daemon=True)]
        self._answer.connect(lambda callback, argument: callback(argument))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._calls.put(None)
        self._client.close()
        self._watch_client.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=5)
        # A call under way when the first close came may have connected again: closed now that the threads are done.
        self._client.close()
        self._watch_client.close()

    def call(self, op: str, args: dict[str, Any] | None = None, *, done: Done = lambda result: None,
             failed: Failed = lambda error: None, urgent: bool = False) -> None:
        """Run `op` with `args` in the background; `done(result)` or `failed(error)` runs on the GUI thread."""
        if urgent:
            threading.Thread(target=self._run_urgent, args=(op, args or {}, done, failed), name=f"ui-{op}",
                             daemon=True).start()
        else:
            self._calls.put((op, args or {}, done, failed))

    def _run_calls(self) -> None:
        while (item := self._calls.get()) is not None:
            op, args, done, failed = item
            self._deliver(functools.partial(self._client.call, op, **args), done, failed)

    def _run_urgent(self, op: str, args: dict[str, Any], done: Done, failed: Failed) -> None:
        with Client(self.socket_path, timeout_s=KILL_TIMEOUT_S) as client:
            self._deliver(lambda: client.call(op, **args), done, failed)

    def _deliver(self, work: Callable[[], Any], done: Done, failed: Failed) -> None:
        try:
            result = work()
        except ServiceGateError as exc:
            self._answer.emit(failed, exc)
        except Exception as exc:  # noqa: BLE001 - a bug must reach the window as an error, not kill the thread
            self._answer.emit(failed, ServiceGateError(f"unexpected error: {exc}"))
        else:
            self._answer.emit(done, result)

    def _run_watch(self) -> None:
        up: bool | None = None
        while not self._stop.is_set():
            try:
                events = self._watch_client.watch()
                if up is not True:
                    up = True
                    self.available.emit(True, "")
                for name, data in events:
                    self.agent_event.emit(name, data)
                if self._stop.is_set():
                    return
                raise AgentUnreachableError("the agent closed the connection")
            except ServiceGateError as exc:
                if up is not False:
                    up = False
                    self.available.emit(False, str(exc))
            self._stop.wait(RETRY_S)
