"""`servicegate run`: wire configuration, audit log, agent core and control socket together.

The shape follows uvicorn's server: start -> main loop -> shutdown. SIGTERM or SIGINT asks for a
graceful stop (open sessions end with `agent_restart`, a final audit checkpoint); if that has
not finished after `shutdown_grace_s`, the process exits by force, because systemd would kill it
anyway and a hung stop must never hold the scanner. Readiness goes to systemd over
NOTIFY_SOCKET when it is set. Logs go to stderr; under journald (JOURNAL_STREAM set) each line
carries its syslog priority as `<N>` so the journal files it at the right level.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from agent import __version__, exam_block, reporting, screen, uplink, upload
from agent.api import dispatcher, handle_portal_message
from agent.audit_log import AuditLog, is_checkpoint
from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.control import ControlServer
from agent.core import Agent
from agent.enroll import take_attempts, totp_secret
from agent.errors import ConfigError, ExitCode, PortalError, ServiceGateError
from agent.exam_block import ExamBlock
from agent.notify import Notifier
from agent.protocol import SYSTEM_ACTOR
from agent.roles import RoleMap
from agent.runner import Runner
from agent.updates import UpdateChannel
from telemetry.shipper import full_jitter

log = logging.getLogger("servicegate.daemon")
T = TypeVar("T")

TICK_S = 1.0  # while something may fall due by time alone (Agent.waiting): session timeouts, a grant's end
IDLE_TICK_S = 30.0  # otherwise; every change of state or audit record brings the next tick to TICK_S at once
# Operations that read the whole audit log, or wait for the portal, run in a worker thread, so the kill switch never
# waits on them.
OFFLOADED = frozenset({"audit_verify", "audit_export", "session_claim", "upload", "service_request", "kill"})
PRUNE_EVERY_S = 24 * 3600
SEND_EVERY_S = 60.0

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{record.name}: {super().format(record)}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("servicegate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def notify_systemd(message: str) -> None:
    """sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET ('@' means the abstract namespace)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), target)
    except OSError as exc:
        log.warning("could not notify systemd at %s: %s", address, exc)


def prepare_directories(config: Config) -> None:
    """State and audit directories, 0700: they hold keys and the record of who accessed what."""
    folders = (("[paths] state_dir", config.paths.state_dir), ("[paths] audit_dir", config.paths.audit_dir),
               ("[paths] state_dir", config.paths.audit_signing_key.parent))
    for key, directory in folders:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise ConfigError(f"{config.source or 'configuration'}: {key} = {str(directory)!r}: cannot use this "
                              f"folder ({exc.strerror}); point it at a folder the agent may create and own") from None


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._stop = asyncio.Event()

    async def serve(self) -> None:
        config = self.config
        prepare_directories(config)
        loop = asyncio.get_running_loop()
        lock = self._lock_state(config.paths.state_dir)
        audit = AuditLog(config.paths.audit_dir, config.paths.audit_signing_key, self.clock,
                         retention_days=config.audit.retention_days,
                         checkpoint_interval=timedelta(minutes=config.audit.checkpoint_interval_min))
        for attempt in take_attempts(config.paths.state_dir):  # `servicegate enroll` cannot write the log itself
            audit.append("enrollment", str(attempt.get("user", "unknown")), attempt)
        link, link_state = uplink.connect(config)
        # Built before the agent, whose counters it reads only once it runs, so that its outbox hears every
        # checkpoint: each head goes to the portal (through the outbox: never shed), and cutting records off the
        # end of the log shows in `servicegate audit verify --against-portal`.
        telemetry = reporting.build(config, counters=lambda: dict(agent.counters), link=link)

        def send_head(record: dict[str, Any]) -> None:
            if is_checkpoint(record):
                telemetry.outbox.put("audit_checkpoint", reporting.checkpoint_head(record))
                telemetry.push_now()  # the portal holds the head at once, not at the next push interval

        audit.listeners.append(send_head)
        # Before the agent takes up its state: whatever an earlier run left is cleared, so that a crash never leaves
        # a task running or the scanner blocked (the agent then ends the sessions and tasks that were open).
        runner = Runner(task_tag(config.paths.state_dir), grace_s=config.tasks.grace_s,
                        use_cgroup=config.tasks.cgroups,
                        on_finished=lambda finished: agent.on_task_finished(finished))  # the agent, made below
        leftovers = runner.sweep()
        released = exam_block.release(config.modality)
        agent = Agent(config, self.clock, audit)
        if leftovers:
            audit.append("task_leftovers_killed", SYSTEM_ACTOR, {"pids": list(leftovers)})
        if config.modality.tool:
            audit.append("examination_block_released" if released[0] else "examination_block_release_failed",
                         SYSTEM_ACTOR, {"at": "agent start", "detail": released[1]})
        agent.runner = runner
        block = ExamBlock(config.modality, on_problem=lambda text: loop.call_soon_threadsafe(agent.block_problem, text),
                          on_change=lambda held: loop.call_soon_threadsafe(agent.block_changed, held))
        agent.exam_block = block
        agent.link_status = link_state.to_dict
        agent.portal_heads = link.heads if link is not None else None
        agent.portal_claim = link.claim if link is not None else None
        agent.portal_service_request = link.request_service if link is not None else None
        if link is not None:
            agent.updates.channel = functools.partial(UpdateChannel, config.paths.state_dir, link.url, link.session)
            agent.updates.send_report = functools.partial(send_update_report, link)
        agent.totp_secret = lambda: totp_secret(config.paths.state_dir)
        roles = RoleMap(config.control.console_group, config.control.modality_group, config.control.viewer_group,
                        admin_uids=frozenset({os.getuid()}))
        server = ControlServer(config.paths.control_socket, dispatcher(agent), roles,
                               request_timeout_s=config.control.request_timeout_s,
                               on_denied=lambda caller, op: agent.record_denial(caller.user, caller.uid, op),
                               offload=OFFLOADED)
        audit.listeners.append(lambda record: server.publish("audit_appended", record))
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(f"{config.source or 'configuration'}: [paths] control_socket = "
                              f"{str(config.paths.control_socket)!r}: cannot create the socket ({exc.strerror}); "
                              f"point it at a path in a folder the agent may write") from None
        agent.in_core = in_loop(loop)
        agent.in_background = lambda work: loop.run_in_executor(None, work)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)
        # The kill switch by signal: `kill -USR1 $(pidof ...)`, or systemd's `systemctl kill -s USR1 servicegate`.
        loop.add_signal_handler(signal.SIGUSR1, lambda: loop.run_in_executor(None, agent.kill, "signal",
                                                                              "SIGUSR1"))
        block.start()
        pending = agent.kill_pending
        if pending is not None:  # the agent stopped in the middle of a kill: finish it
            loop.run_in_executor(None, agent.kill, str(pending.get("actor", SYSTEM_ACTOR)),
                                 f"{pending.get('text', '')} (finished after a restart)".strip())
        log.info("ServiceGate agent %s ready on %s (access: %s)", __version__, config.paths.control_socket,
                 agent.grant.level.value)
        notify_systemd(f"READY=1\nSTATUS=access {agent.grant.level.value}")
        telemetry.start()
        notifier = Notifier(config.notify, config.paths.state_dir / "mail-outbox.sqlite")
        notifier.start()
        sender: SendWorker | None = None
        if link is not None:
            link.start(on_loop(loop, lambda message: handle_portal_message(agent, message.id, message.type,
                                                                           message.body)))
            sender = SendWorker(link, config.paths.state_dir, agent)
            sender.start()
            agent.wake_sender = sender.wake
            enrollment = link.enrollment
            agent.screens.connect = screen.portal_connector(link.session, link.url, lambda: screen.tls_context(
                enrollment.ca_file, enrollment.cert_file, enrollment.key_file), config.portal.proxy_url)
        agent.screens.loop = loop
        timers: dict[str, asyncio.TimerHandle] = {}

        def every(name: str, seconds: float, job: Callable[[], None]) -> None:
            timers[name] = loop.call_later(seconds, every, name, seconds, job)
            job()

        def tick() -> None:
            """A timer callback, not a task woken by a timeout, and rare while nothing waits: the agent's idle cost
            is these wake-ups (docs/performance.md)."""
            del timers["tick"]
            try:
                agent.tick()
            finally:
                arm(TICK_S if agent.waiting() else IDLE_TICK_S)

        def arm(seconds: float) -> None:
            """The next tick in at most `seconds`."""
            current = timers.get("tick")
            if current is None or current.when() > loop.time() + seconds:
                if current is not None:
                    current.cancel()
                timers["tick"] = loop.call_later(seconds, tick)

        def wake(*_: object) -> None:
            """Something changed (from any thread): the next tick within TICK_S."""
            loop.call_soon_threadsafe(arm, TICK_S)

        def publish_and_wake(event: str, data: dict[str, Any]) -> None:
            server.publish(event, data)
            if event in ("session_changed", "session_refused"):  # the portal (and the engineer) hear at once
                telemetry.outbox.put("session_event", reporting.session_event(event, data))
                telemetry.push_now()
            if event == "session_changed":  # e-mail to the site's staff, when configured; never blocks
                notifier.session_changed(data)
            if event == "task_changed":
                telemetry.outbox.put("task_event", reporting.task_event(data, agent.scrubber.scrub))
                telemetry.push_now()
            if event == "update_changed" and data["kind"] == "configuration" and data["state"] == "installed":
                try:  # the vendor's new rules, at once
                    telemetry.use_rules(reporting.threshold_rules(config))
                except ConfigError as exc:
                    log.error("the new threshold rules were not taken: %s", exc)
            wake()

        agent.publish_held(publish_and_wake)

        def send_file(record: dict[str, Any]) -> None:
            telemetry.outbox.put("task_file", record)
            telemetry.push_now()

        agent.send_file = send_file
        audit.listeners.append(wake)
        try:
            every("prune", PRUNE_EVERY_S, lambda: self._prune(audit))
            arm(TICK_S)
            await self._stop.wait()
        finally:
            for timer in timers.values():
                timer.cancel()
            notify_systemd("STOPPING=1")
            telemetry.stop()
            if link is not None:
                await asyncio.to_thread(link.stop)  # its thread may be waiting for this loop
            if sender is not None:
                await asyncio.to_thread(sender.join)
            await server.stop()
            agent.stopping()
            await asyncio.to_thread(runner.close)  # every task stopped (their ends are recorded on this loop)
            agent.shutdown()
            await asyncio.to_thread(block.close)  # released: nobody renews it any more
            notifier.close()  # a notice still waiting is sent after the next start
            audit.close()
            log.info("ServiceGate agent stopped")
            os.close(lock)

    @staticmethod
    def _prune(audit: AuditLog) -> None:
        try:
            audit.prune()
        except (OSError, ServiceGateError) as exc:
            log.error("could not prune old audit segments: %s", exc)

    @staticmethod
    def _lock_state(state_dir: Path) -> int:
        """One agent per state folder: two writers would fork the audit log's hash chain."""
        fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ServiceGateError(f"another agent is already running with state folder {state_dir} (pid {holder}); "
                                   f"stop it first (`systemctl stop servicegate`)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def request_stop(self, signum: int | None = None) -> None:
        if self._stop.is_set():
            return
        log.info("stopping (%s); forced exit in %d s if the stop hangs",
                 signal.Signals(signum).name if signum else "requested", self.config.daemon.shutdown_grace_s)
        self._stop.set()
        # A daemon thread, so a clean stop is never held up by it.
        timer = threading.Timer(self.config.daemon.shutdown_grace_s, _force_exit)
        timer.daemon = True
        timer.start()


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[T], None]) -> Callable[[T], None]:
    """`call`, made callable from another thread: it runs on `loop` (where the agent's state lives) and the
    calling thread waits for it, and gets its exception."""

    async def run(argument: T) -> None:
        call(argument)

    def from_thread(argument: T) -> None:
        asyncio.run_coroutine_threadsafe(run(argument), loop).result()  # once submitted, it runs: wait for it

    return from_thread


class SendWorker:
    """Sends what waits for the portal through the link, in a thread of its own: the upload queue (agent.upload) and
    the service requests kept while the portal could not be reached (`Agent.send_service_requests`). At start (what
    an earlier run left half-sent goes on from where the portal says it stopped), when something is queued, every
    minute, and with backoff while the portal cannot be reached. Each file that reaches a final state is recorded in
    the audit log (on the event loop, through `Agent.in_core`), as is each request sent. It stops with the link."""

    def __init__(self, link: uplink.Uplink, state_dir: Path, agent: Agent) -> None:
        self.link = link
        self.uploader = upload.Uploader(link.call, state_dir)
        self.agent = agent
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="portal-upload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def join(self) -> None:
        self._wake.set()
        self._thread.join(timeout=5)

    def _record(self, entry: dict[str, Any]) -> None:
        self.agent.in_core(lambda: self.agent.upload_finished(entry))

    def _run(self) -> None:
        failures = 0
        while not self.link.stop_event.is_set():
            before = {e["entry_id"]: e["state"] for e in self.uploader.list()}
            reached = True
            try:
                self.uploader.run_once()
            except Exception as exc:  # noqa: BLE001 - the link is down or the portal refused: try again later
                reached = False
                log.warning("upload: %s; trying again later", exc)
            for entry in self.uploader.list():
                if entry["state"] in upload.FINAL and before.get(entry["entry_id"]) in upload.PENDING:
                    self._record(entry)
            for what, send in (("service requests", self.agent.send_service_requests),
                               ("updates", self.agent.updates.fetch_pending),
                               ("update reports", self.agent.updates.send_reports)):
                try:  # each on its own: a file the portal keeps refusing must not hold up a request for help
                    reached = send() and reached
                except Exception:  # noqa: BLE001 - whatever went wrong, it stays queued for the next try
                    reached = False
                    log.exception("%s: unexpected error; trying again later", what)
            failures = 0 if reached else failures + 1
            self._wake.wait(full_jitter(failures) if failures else SEND_EVERY_S)
            self._wake.clear()


def send_update_report(link: uplink.Uplink, report: dict[str, Any]) -> None:
    try:
        link.call("POST", "/v1/updates/report", json=report)
    except uplink.LinkError as exc:
        raise PortalError(str(exc)) from None


def task_tag(state_dir: Path) -> str:
    """The tag of this installation's task processes: the same after a restart (so leftovers are found), different
    for two agents with different state folders (tests and the demo run several on one machine)."""
    return "sg-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]


def in_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], T]], T]:
    """Run a change on `loop` from a worker thread and wait for its result (or its exception)."""

    async def run(change: Callable[[], T]) -> T:
        return change()

    def from_thread(change: Callable[[], T]) -> T:
        return asyncio.run_coroutine_threadsafe(run(change), loop).result()

    return from_thread


def _force_exit() -> None:
    log.error("graceful stop did not finish in time; exiting by force")
    os._exit(ExitCode.FAILED)


def run(config: Config) -> int:
    setup_logging(config.daemon.log_level)
    try:
        asyncio.run(Daemon(config).serve())
    except ServiceGateError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)
    except PermissionError as exc:
        log.error("permission denied: %s. Run the agent as its service user (or root), or point the paths in "
                  "%s at folders it may write.", exc, config.source or "agent.toml")
        return int(ExitCode.PERMISSION)
    return int(ExitCode.OK)
