"""The task runner under the kill switch: runs allow-listed service programs, watches them, and stops them.

Other modules decide WHAT runs; this one only runs (argv, never a shell), watches (output, time-out, exit)
and stops processes. The customer's kill switch calls `Runner.stop_all`: every process that belongs to a task
must then be gone, including the ones that ignore SIGTERM, fork, or double-fork and `setsid` to escape.

How a task's processes are contained, and found again:

1. The tag. Every task process gets `SERVICEGATE_TASK=<tag>/<task_id>` in its environment, which its children
   inherit (fork copies it, exec keeps it unless a program clears its environment on purpose). `<tag>` is stable
   per installation, so an agent that restarts after a crash finds by `sweep` what the crashed one left, by
   reading /proc/PID/environ of every process.
2. The subreaper. The agent process is made a child subreaper (PR_SET_CHILD_SUBREAPER): a task descendant whose
   parent dies (a double fork, a `setsid` daemon) is re-parented to the agent instead of to init. So every task
   process stays a descendant of the agent, which keeps the per-poll /proc scan small (environ is read only for
   the agent's descendants), and the zombies of killed escapees become the agent's to reap (see `_Reaper`).
3. The container, one of two (`Runner.containment`):
   - "cgroup" (cgroup v2, as root): each task gets `<cgroup2 mount><agent's cgroup>/servicegate-<tag>/<task_id>/`
     and its first process joins it BEFORE exec (the pre-exec hook writes "0" to the task's `cgroup.procs`), so
     nothing the task ever forks can be outside it, whatever it does to its session, group or environment.
     Stopping: SIGTERM to every pid in `cgroup.procs` (re-read every poll: processes fork), the grace period
     polling `cgroup.events` for `populated 0`, then `cgroup.kill` (the kernel kills the whole subtree at once;
     without that file, SIGKILL to each listed pid until none is left), confirm `populated 0`, rmdir.
   - "process-group" (no cgroup2, not writable, or `use_cgroup=False`): each task is its own process group
     (`process_group=0`). Stopping: SIGTERM to the group AND to every tagged process (a `setsid` escapee left
     the group but kept the tag), the grace period, then SIGKILL to the group and every tagged process, until
     no process of the task is left (bounded by `KILL_CONFIRM_S`).
   In both, the tag scan is also the safety net: a task is stopped only when no live process carries its tag
   (nor sits in its cgroup, nor in its process group).

One scan of /proc per poll serves every task being stopped (the kill switch stops 20 tasks with one shared grace
period, not one grace period per task), and polls are `POLL_S` apart: the kill switch's target is <= 500 ms for
20 cooperative tasks and <= grace + 200 ms for 20 that ignore SIGTERM (benchmarks/kill_bench.py measures it).

Threads: each task has a watcher thread ("task-<id>": waits for the exit through a pidfd, enforces the time-out,
kills leftovers once the main process has exited — a task's processes never outlive the task — and reports
`Finished` exactly once) and an output thread ("task-<id>-output": reads stdout and stderr, keeps `output_cap`
bytes of each, counts the rest). Stopping is idempotent and may run in several threads at once (the kill switch,
a time-out, the watcher's leftover check): signals to a process already gone are ignored.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import math
import os
import re
import select
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

log = logging.getLogger("servicegate.runner")

Containment = Literal["cgroup", "process-group"]

TAG_VARIABLE = "SERVICEGATE_TASK"
POLL_S = 0.01  # between two looks at the processes being stopped
KILL_CONFIRM_S = 2.0  # how long SIGKILLed processes get to vanish (one in uninterruptible sleep can take that long)
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PR_SET_CHILD_SUBREAPER = 36
_TAG_KEY = TAG_VARIABLE.encode() + b"="


@dataclass(frozen=True)
class Launch:
    task_id: str  # unique, [A-Za-z0-9_-]+
    argv: tuple[str, ...]  # argv[0] an absolute path to an executable; no shell ever
    cwd: Path
    env: Mapping[str, str]  # the whole environment for the task (the runner adds its tag variable)
    timeout_s: float
    output_cap: int  # bytes of stdout and of stderr kept each; the rest is read, counted, dropped


@dataclass(frozen=True)
class Finished:
    task_id: str
    outcome: str  # "completed" (exit 0) | "failed" (exit != 0) | "timeout" | "stopped"
    returncode: int | None  # Popen returncode (negative = signal)
    stdout: bytes  # at most output_cap
    stderr: bytes
    dropped: int  # output bytes beyond the caps
    duration_s: float  # from the start to the main process's exit


@dataclass(frozen=True)
class StopReport:
    interrupted: tuple[str, ...]  # task ids that were running when stop_all began
    remaining: tuple[int, ...]  # pids still alive afterwards (empty = confirmed none remains)
    containment: Containment
    forced: int  # processes that needed SIGKILL
    elapsed_s: float


class RunnerError(Exception):
    """A task could not be started; the message says what and what to do."""


# --- /proc: one scan serves every task being stopped ---------------------------------------------------------------


class _Proc(NamedTuple):
    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int  # start time in clock ticks since boot: with the pid, it names one process (pids are reused)
    zombie: bool
    descendant: bool  # of the agent
    tag: str | None  # the value of SERVICEGATE_TASK, if read and present


def _read(path: str) -> bytes | None:
    """A /proc file's content, or None when the process is gone or not readable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:  # ESRCH and the like: it exited while being read
        return None
    finally:
        os.close(fd)


def _stat(pid: int) -> tuple[int, int, int, int, bool] | None:
    """(ppid, pgid, sid, start, zombie) from /proc/PID/stat; the command name may hold spaces and parentheses."""
    data = _read(f"/proc/{pid}/stat")
    if not data:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]), fields[0] in (b"Z", b"X")


def _tag_of(pid: int) -> str | None:
    """SERVICEGATE_TASK of a live process from /proc/PID/environ (empty for zombies and kernel threads).

    Read directly rather than through psutil.Process.environ(): the same file and the same failures (gone,
    denied, zombie: None here), but without building a dict of every variable of every process at each poll."""
    environ = _read(f"/proc/{pid}/environ")
    if not environ:
        return None
    if environ.startswith(_TAG_KEY):
        begin = len(_TAG_KEY)
    else:
        at = environ.find(b"\0" + _TAG_KEY)
        if at < 0:
            return None
        begin = at + 1 + len(_TAG_KEY)
    end = environ.find(b"\0", begin)
    return environ[begin:end if end >= 0 else len(environ)].decode(errors="replace")


class _Snapshot:
    """Every process at one moment: stat of all, environ of the agent's descendants (or of all, for a sweep or
    when the agent could not become a subreaper and escapees may live anywhere)."""

    def __init__(self, everyone: bool) -> None:
        self.me = os.getpid()
        stats: dict[int, tuple[int, int, int, int, bool]] = {}
        for name in os.listdir("/proc"):
            if name.isdigit() and (stat := _stat(int(name))) is not None:
                stats[int(name)] = stat
        children: dict[int, list[int]] = {}
        for pid, stat in stats.items():
            children.setdefault(stat[0], []).append(pid)
        descendants: set[int] = set()
        todo = list(children.get(self.me, ()))
        while todo:
            pid = todo.pop()
            if pid not in descendants:
                descendants.add(pid)
                todo.extend(children.get(pid, ()))
        self.procs: dict[int, _Proc] = {}
        self.by_tag: dict[str, list[_Proc]] = {}
        self.by_pgid: dict[int, list[_Proc]] = {}
        for pid, (ppid, pgid, sid, start, zombie) in stats.items():
            descendant = pid in descendants
            read_tag = not zombie and pid != self.me and (descendant or (everyone and ppid != 2 and pid != 2))
            proc = _Proc(pid, ppid, pgid, sid, start, zombie, descendant, _tag_of(pid) if read_tag else None)
            self.procs[pid] = proc
            if not zombie:
                if proc.tag is not None:
                    self.by_tag.setdefault(proc.tag, []).append(proc)
                if descendant:
                    self.by_pgid.setdefault(pgid, []).append(proc)

    def get(self, pid: int) -> _Proc | None:
        """A process listed elsewhere (cgroup.procs) that this snapshot may have missed: forked since."""
        if (proc := self.procs.get(pid)) is not None:
            return proc
        stat = _stat(pid)
        if stat is None:
            return None
        ppid, pgid, sid, start, zombie = stat
        return _Proc(pid, ppid, pgid, sid, start, zombie, descendant=False, tag=None)


# --- Reaping: only what was ours -----------------------------------------------------------------------------------


class _Reaper:
    """Reaps zombies of task descendants that were re-parented to the agent (it is their subreaper).

    The rule, because a wrong waitpid corrupts someone else's exit code: other code in the agent starts its own
    children with subprocess, and those must NEVER be reaped here (their Popen would see ECHILD and report a made-up
    returncode). So a zombie child of the agent is reaped only when
    - this runner saw that very process (pid AND start time, since pids are reused) as a task process while it was
      alive: tagged, in a task's cgroup, or in a task's process group; or
    - its process group or session id, read from its /proc/PID/stat, is one recorded for a task: a process that
      lived and died between two polls still carries its task's group or session (the agent's own group and
      session are never recorded, since the agent's other children share them);
    and never when it is a task's main process, which its Popen reaps. The record is checked again just before
    waitpid(pid, WNOHANG), and a task's records are forgotten once it is confirmed empty (its group and session
    ids can then be reused by the kernel). Module-wide because waitpid is process-wide: several runners in one
    process (a test's crashed-runner simulation) must not reap each other's main processes either.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, set[tuple[int, int]]] = {}  # task key -> {(pid, start)}
        self._groups: dict[str, set[int]] = {}  # task key -> {pgid or sid}
        self._popen: set[int] = set()  # main processes, reaped by their Popen

    def own_popen(self, pid: int, owned: bool) -> None:
        with self._lock:
            (self._popen.add if owned else self._popen.discard)(pid)

    def note(self, key: str, procs: Iterable[_Proc], groups: Iterable[int] = ()) -> None:
        own = {os.getpgid(0), os.getsid(0)}  # the agent's: its other children share them
        procs, groups = list(procs), [g for g in groups if g not in own]
        if not procs and not groups:
            return  # (no empty records for a task already forgotten)
        with self._lock:
            seen = self._seen.setdefault(key, set())
            known = self._groups.setdefault(key, set())
            for proc in procs:
                seen.add((proc.pid, proc.start))
                known.update(g for g in (proc.pgid, proc.sid) if g not in own)
            known.update(groups)

    def forget(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)
            self._groups.pop(key, None)

    def reap(self, snapshot: _Snapshot) -> None:
        zombies = [p for p in snapshot.procs.values() if p.zombie and p.ppid == snapshot.me]
        if not zombies:
            return
        with self._lock:
            seen = set().union(*self._seen.values()) if self._seen else set()
            groups = set().union(*self._groups.values()) if self._groups else set()
            for zombie in zombies:
                if zombie.pid in self._popen:
                    continue
                if (zombie.pid, zombie.start) not in seen and zombie.pgid not in groups and zombie.sid not in groups:
                    continue
                stat = _stat(zombie.pid)  # still that zombie, still ours? (only we can reap our own zombie)
                if stat is None or not stat[4] or stat[0] != snapshot.me or stat[3] != zombie.start:
                    continue
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(zombie.pid, os.WNOHANG)


    def forget_finished_helpers(self, snapshot: _Snapshot) -> None:
        """A helper's record goes once no process of its session is left (its pid may then be reused)."""
        alive = {g for p in snapshot.procs.values() for g in (p.pgid, p.sid)}
        with self._lock:
            for key in [k for k in self._groups if k.startswith("helper-")]:
                if not self._groups[key] & alive:
                    self._groups.pop(key, None)
                    self._seen.pop(key, None)


_REAPER = _Reaper()


def run_helper(argv: Sequence[str], timeout_s: float, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Run a short program the agent calls itself (an examination-block hook, a restore command): (exit status,
    stdout and stderr). Raises subprocess.TimeoutExpired after `timeout_s`, having killed its whole session, and
    OSError when it cannot start.

    It runs in a session of its own, with its output in a temporary file rather than a pipe (a background child it
    leaves behind must not hold the call open). The agent is a child subreaper, so such a child re-parents to the
    agent when the program exits: the session is recorded, and its zombies are reaped here at every call, never
    piled up (the _Reaper's rule: only what is recognisably ours)."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(list(argv), start_new_session=True, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, env=dict(env) if env is not None else None)
        _REAPER.note(f"helper-{process.pid}", [], groups=[process.pid])
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        finally:
            reap_helpers()
        output.seek(0)
        return process.returncode, output.read(1 << 20).decode("utf-8", "replace")


def reap_helpers() -> None:
    """Reap the zombies that helper programs' children left (run_helper), and forget finished helpers."""
    snapshot = _Snapshot(everyone=False)
    _REAPER.reap(snapshot)
    _REAPER.forget_finished_helpers(snapshot)  # a zombie reaped just now keeps its record until the next call


def _become_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER on the agent process (idempotent: every Runner asks, in case someone cleared it);
    False, logged, when the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = int(libc.prctl(ctypes.c_int(_PR_SET_CHILD_SUBREAPER), ctypes.c_ulong(1), ctypes.c_ulong(0),
                            ctypes.c_ulong(0), ctypes.c_ulong(0)))
    if result != 0:
        log.warning("could not make the agent a child subreaper (%s): escaped task processes re-parent to init; "
                    "they are still found by their tag, scanning every process", os.strerror(ctypes.get_errno()))
    return result == 0


# --- cgroup v2 -----------------------------------------------------------------------------------------------------


def _cgroup2_mount() -> Path | None:
    """The cgroup2 mount point from /proc/self/mountinfo (fstype after " - "; the mount point is the 5th field)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            return Path(before.split(" ")[4].encode().decode("unicode_escape"))  # octal escapes such as \040
    return None


def _own_cgroup() -> str | None:
    """The agent's cgroup v2 path ("0::/path" in /proc/self/cgroup)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return line[3:].split(" ", 1)[0]  # " (deleted)" follows when the cgroup was removed
    return None


def _cgroup_base(tag: str) -> tuple[Path | None, str]:
    """This runner's cgroup directory `<mount><own cgroup>/servicegate-<tag>`, or None and why not."""
    mount = _cgroup2_mount()
    if mount is None:
        return None, "no cgroup2 file system is mounted"
    own = _own_cgroup()
    if own is None:
        return None, "/proc/self/cgroup has no cgroup v2 line (0::)"
    return mount / own.lstrip("/") / f"servicegate-{tag}", ""


def _cgroup_pids(cgroup: Path) -> set[int]:
    """Pids in a cgroup and in any cgroup the task made below it (only the kernel's files are read)."""
    pids: set[int] = set()
    for directory, _subdirs, _files in os.walk(cgroup):
        data = _read(os.path.join(directory, "cgroup.procs"))
        if data:
            pids.update(int(pid) for pid in data.split())
    return pids


def _cgroup_populated(cgroup: Path) -> bool:
    data = _read(str(cgroup / "cgroup.events"))
    return data is not None and b"populated 1" in data


def _remove_cgroup(cgroup: Path) -> bool:
    """rmdir a task cgroup and any the task made below it, deepest first; True when it is gone."""
    for _ in range(50):
        try:
            for directory, _subdirs, _files in os.walk(cgroup, topdown=False):
                os.rmdir(directory)
            return True
        except FileNotFoundError:
            if not cgroup.exists():
                return True
        except OSError as error:
            if error.errno != errno.EBUSY:
                log.warning("could not remove cgroup %s: %s", cgroup, error)
                return False
        time.sleep(POLL_S)  # EBUSY: the last process's exit is still being accounted
    log.warning("could not remove cgroup %s: still busy", cgroup)
    return False


def _join_cgroup(fd: int) -> Callable[[], None]:
    def join() -> None:
        # Runs in the child between fork and exec. preexec_fn is unsafe in general in a threaded program (the
        # child may inherit a lock another thread held), but this one does a single write syscall on an fd the
        # parent opened: no lock, no allocation, no logging. Writing "0" moves the writing process itself.
        os.write(fd, b"0")

    return join


# --- Stopping ------------------------------------------------------------------------------------------------------


@dataclass
class _Target:
    """What to stop: the processes tagged `value` (or, for a sweep, every value under `prefix` but `exclude`),
    in `cgroups`, or in process group `pgid`; `popen` is the main process, which its Popen reaps."""

    key: str
    value: str | None = None
    prefix: str | None = None
    exclude: frozenset[str] = frozenset()
    cgroups: list[Path] = field(default_factory=list)
    pgid: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    def members(self, snapshot: _Snapshot) -> dict[int, _Proc]:
        """The live processes of this target."""
        found: dict[int, _Proc] = {}
        if self.value is not None:
            found.update((p.pid, p) for p in snapshot.by_tag.get(self.value, ()))
        if self.prefix is not None:
            for tag, procs in snapshot.by_tag.items():
                if tag.startswith(self.prefix) and tag not in self.exclude:
                    found.update((p.pid, p) for p in procs)
        if self.pgid is not None:
            found.update((p.pid, p) for p in snapshot.by_pgid.get(self.pgid, ()))
        for cgroup in self.cgroups:
            for pid in _cgroup_pids(cgroup):
                proc = snapshot.get(pid)
                if proc is not None and not proc.zombie:
                    found[pid] = proc
        return found

    def group_is_ours(self, snapshot: _Snapshot) -> bool:
        """killpg only while the group number cannot have been reused: the leader is unreaped or a member lives."""
        return self.pgid is not None and (
            (self.popen is not None and self.popen.returncode is None) or bool(snapshot.by_pgid.get(self.pgid)))

    def populated(self) -> bool:
        return any(_cgroup_populated(cgroup) for cgroup in self.cgroups)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _cgroup_kill(cgroup: Path) -> bool:
    """Write "1" to cgroup.kill (kernel >= 5.14); False when the file is missing or the cgroup is gone."""
    try:
        fd = os.open(cgroup / "cgroup.kill", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, b"1")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@dataclass
class _Outcome:
    remaining: tuple[int, ...]
    forced: int
    signalled: set[int]


def _terminate(targets: list[_Target], grace_s: float, everyone: bool) -> _Outcome:
    """SIGTERM everything the targets hold, one shared grace period, then SIGKILL what is left and confirm.

    Each poll takes one snapshot of /proc for all targets, signals the processes that appeared since (they fork),
    records what it saw for the reaper, and reaps what may be reaped. Each process gets SIGTERM once: a second one
    could interrupt a cooperative program's own clean-up."""
    deadline = time.monotonic() + max(0.0, grace_s)
    kill_deadline: float | None = None
    termed: set[tuple[int, int]] = set()
    killed: set[tuple[int, int]] = set()
    signalled: set[int] = set()
    first, confirmed = True, False
    while True:
        snapshot = _Snapshot(everyone)
        members: dict[int, _Proc] = {}
        for target in targets:
            found = target.members(snapshot)
            _REAPER.note(target.key, found.values())
            members.update(found)
            if target.popen is not None:
                target.popen.poll()  # reaps the main process once it is a zombie (Popen makes that thread-safe)
        _REAPER.reap(snapshot)
        if not members and not any(target.populated() for target in targets):
            if confirmed:
                return _Outcome((), len(killed), signalled)
            confirmed = True  # look once more: a zombie re-parented to the agent during this scan is reaped next
            continue
        confirmed = False
        now = time.monotonic()
        if kill_deadline is None and now >= deadline:
            kill_deadline = now + KILL_CONFIRM_S
            for target in targets:
                for cgroup in target.cgroups:
                    if _cgroup_populated(cgroup):
                        killed.update((p.pid, p.start) for pid in _cgroup_pids(cgroup) if (p := snapshot.get(pid)))
                        _cgroup_kill(cgroup)  # the whole subtree at once; when missing, the loop below SIGKILLs
        if kill_deadline is None:
            # SIGCONT after SIGTERM: a stopped process would otherwise keep the SIGTERM pending all the grace period.
            if first:  # the group at once (and its members are done), then whatever left the group
                for target in targets:
                    if target.pgid is not None and target.group_is_ours(snapshot):
                        _killpg(target.pgid, signal.SIGTERM)
                        _killpg(target.pgid, signal.SIGCONT)
                        termed.update((p.pid, p.start) for p in snapshot.by_pgid.get(target.pgid, ()))
            for proc in members.values():
                if (proc.pid, proc.start) not in termed:
                    termed.add((proc.pid, proc.start))
                    _signal(proc.pid, signal.SIGTERM)
                    _signal(proc.pid, signal.SIGCONT)
                signalled.add(proc.pid)
        else:
            if now >= kill_deadline:
                remaining = tuple(sorted(members))
                log.error("processes still alive after SIGKILL: %s", ", ".join(map(str, remaining)))
                return _Outcome(remaining, len(killed), signalled)
            for target in targets:
                if target.pgid is not None and target.group_is_ours(snapshot):
                    _killpg(target.pgid, signal.SIGKILL)
            for proc in members.values():
                killed.add((proc.pid, proc.start))
                signalled.add(proc.pid)
                _signal(proc.pid, signal.SIGKILL)
        first = False
        time.sleep(POLL_S)


# --- The runner ----------------------------------------------------------------------------------------------------


@dataclass
class _Task:
    launch: Launch
    value: str  # "<tag>/<task_id>"
    popen: subprocess.Popen[bytes]
    cgroup: Path | None
    started: float
    pidfd: int | None
    wake_r: int  # wakes the output thread when the watcher has no more use for the pipes
    wake_w: int
    target: _Target
    reason: str | None = None  # "stopped" | "timeout", once something decided to stop the task
    exited: bool = False  # the main process has exited
    stoppers: int = 0  # stop/stop_all calls stopping this task right now
    duration_s: float = 0.0
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    watcher: threading.Thread | None = None


class Runner:
    """Runs tasks and stops them: `stop` one, `stop_all` for the kill switch, `sweep` at agent start."""

    def __init__(self, tag: str, *, grace_s: float = 5.0, use_cgroup: bool = True,
                 on_finished: Callable[[Finished], None] = lambda f: None) -> None:
        if not _ID.fullmatch(tag):
            raise ValueError(f"runner tag {tag!r}: use 1-64 characters A-Z, a-z, 0-9, _ or -")
        self.tag = tag
        self.grace_s = grace_s
        self._on_finished = on_finished
        self._lock = threading.Lock()  # the task table and each task's reason, exited and stoppers
        self._stopped = threading.Condition(self._lock)  # a stop/stop_all call is done with its tasks
        self._start_lock = threading.Lock()  # start and sweep exclude each other
        self._tasks: dict[str, _Task] = {}
        self._everyone = not _become_subreaper()
        self._base: Path | None = None
        self.containment: Containment = "process-group"
        if use_cgroup:
            self._base = self._make_cgroup_base()
            if self._base is not None:
                self.containment = "cgroup"

    def _make_cgroup_base(self) -> Path | None:
        base, why = _cgroup_base(self.tag)
        if base is not None:
            probe = base / ".probe"  # a task id cannot start with a dot
            try:
                base.mkdir(exist_ok=True)
                if not (base / "cgroup.procs").exists():
                    raise OSError(errno.ENOTSUP, f"{base} is not a cgroup")
                probe.mkdir(exist_ok=True)
                probe.rmdir()
                self._remove_idle_base(base)
                return base
            except OSError as error:
                why = f"cannot create task cgroups under {base}: {error.strerror or error}"
        log.warning("task containment falls back to process groups: %s (run the agent as root on a system with "
                    "cgroup v2; under systemd give the unit Delegate=yes)", why)
        return None

    @staticmethod
    def _remove_idle_base(base: Path) -> None:
        """The runner's cgroup directory exists only while it has tasks (start makes it again), so an agent killed
        while idle leaves nothing behind; one with leftover task cgroups stays (EBUSY) for `sweep` to find."""
        with contextlib.suppress(OSError):
            base.rmdir()

    # -- starting --

    def start(self, launch: Launch) -> None:
        """Start a task; RunnerError when it cannot be (bad launch, duplicate id, missing program, cgroup)."""
        task_id = launch.task_id
        self._check(launch)
        value = f"{self.tag}/{task_id}"
        env = dict(launch.env)
        env[TAG_VARIABLE] = value
        with self._start_lock:
            with self._lock:
                if task_id in self._tasks:
                    raise RunnerError(f"task {task_id} is already running: wait for it to finish or use another id")
            cgroup, procs_fd = self._make_task_cgroup(task_id) if self._base is not None else (None, None)
            try:
                popen = subprocess.Popen(
                    list(launch.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    cwd=launch.cwd, env=env, close_fds=True, process_group=0,
                    preexec_fn=None if procs_fd is None else _join_cgroup(procs_fd))
            except (OSError, subprocess.SubprocessError) as error:
                if cgroup is not None:
                    _remove_cgroup(cgroup)
                raise RunnerError(f"could not start task {task_id} ({launch.argv[0]}): {error}; check the program, "
                                  f"its permissions and the working directory {launch.cwd}") from error
            finally:
                if procs_fd is not None:
                    os.close(procs_fd)
            _REAPER.own_popen(popen.pid, True)
            _REAPER.note(value, (), groups=(popen.pid,))
            try:
                pidfd: int | None = os.pidfd_open(popen.pid)
            except (AttributeError, OSError):
                pidfd = None  # kernel < 5.3: the watcher polls instead
            wake_r, wake_w = os.pipe()
            target = _Target(key=value, value=value, cgroups=[cgroup] if cgroup else [], pgid=popen.pid,
                             popen=popen)
            task = _Task(launch, value, popen, cgroup, time.monotonic(), pidfd, wake_r, wake_w, target)
            task.watcher = threading.Thread(target=self._watch, args=(task,), name=f"task-{task_id}", daemon=True)
            with self._lock:
                self._tasks[task_id] = task
            task.watcher.start()
        log.info("task %s started: pid %d, %s", task_id, popen.pid, self.containment)

    def _check(self, launch: Launch) -> None:
        what = f"task {launch.task_id!r}"
        if not _ID.fullmatch(launch.task_id):
            raise RunnerError(f"{what}: a task id is 1-64 characters A-Z, a-z, 0-9, _ or -")
        if not launch.argv or not os.path.isabs(launch.argv[0]):
            raise RunnerError(f"{what}: argv[0] must be the absolute path of the program, not {launch.argv[:1]}")
        program = launch.argv[0]
        if not os.path.isfile(program):
            raise RunnerError(f"{what}: program {program} does not exist: install it or fix the allow-list")
        if not os.access(program, os.X_OK):
            raise RunnerError(f"{what}: program {program} is not executable: fix its permissions")
        if not launch.cwd.is_dir():
            raise RunnerError(f"{what}: working directory {launch.cwd} does not exist")
        if not launch.timeout_s > 0 or launch.output_cap < 0:
            raise RunnerError(f"{what}: timeout_s must be > 0 and output_cap >= 0")

    def _make_task_cgroup(self, task_id: str) -> tuple[Path, int]:
        assert self._base is not None
        cgroup = self._base / task_id
        try:
            if cgroup.exists() and not _remove_cgroup(cgroup):
                raise OSError(errno.EBUSY, "a leftover cgroup of that id still holds processes (run sweep)")
            for attempt in range(3):
                self._base.mkdir(exist_ok=True)
                try:
                    cgroup.mkdir()
                    break
                except FileNotFoundError:  # the last task's watcher removed the idle base just now
                    if attempt == 2:
                        raise
            return cgroup, os.open(cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError as error:
            if cgroup.exists():
                _remove_cgroup(cgroup)
            raise RunnerError(f"could not create the cgroup of task {task_id} at {cgroup}: "
                              f"{error.strerror or error}") from error

    # -- watching --

    def _watch(self, task: _Task) -> None:
        output = threading.Thread(target=self._read_output, args=(task,), name=f"task-{task.launch.task_id}-output",
                                  daemon=True)
        output.start()
        try:
            deadline = task.started + task.launch.timeout_s
            while not self._wait_exit(task, deadline):
                with self._lock:
                    if task.reason is None:
                        task.reason = "timeout"
                log.info("task %s timed out after %g s: stopping it", task.launch.task_id, task.launch.timeout_s)
                _terminate([task.target], self.grace_s, self._everyone)
                deadline = math.inf
            task.popen.wait()
            task.duration_s = time.monotonic() - task.started
            _REAPER.own_popen(task.popen.pid, False)
            with self._lock:
                task.exited = True
                # A stop or the kill switch in progress owns the grace period: wait for it, then check for leftovers.
                self._stopped.wait_for(lambda: task.stoppers == 0, timeout=KILL_CONFIRM_S + 60)
            # Leftovers: descendants still running after the main process exited. A no-op when none is left.
            outcome = _terminate([task.target], self.grace_s, self._everyone)
            if outcome.signalled:
                log.info("task %s: stopped %d leftover process(es)", task.launch.task_id, len(outcome.signalled))
            if not outcome.remaining:
                _REAPER.forget(task.value)
            os.write(task.wake_w, b"x")
            output.join(timeout=5)
        finally:
            self._finish(task, output_done=not output.is_alive())

    def _wait_exit(self, task: _Task, deadline: float) -> bool:
        """Wait for the main process to exit (True) or the deadline (False)."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return task.popen.poll() is not None
            if task.pidfd is not None:
                poller = select.poll()
                poller.register(task.pidfd, select.POLLIN)
                if poller.poll(min(remaining, 3600.0) * 1000 + 1):
                    return True
            else:
                try:
                    task.popen.wait(timeout=min(remaining, 3600.0))
                    return True
                except subprocess.TimeoutExpired:
                    pass

    def _read_output(self, task: _Task) -> None:
        """Read stdout and stderr until both end, or until the watcher says the task is over: a process that could
        not be killed may hold the pipes open, so then drain what is there (for at most a second) and stop."""
        assert task.popen.stdout is not None
        assert task.popen.stderr is not None
        cap = task.launch.output_cap
        buffers = {task.popen.stdout.fileno(): task.stdout, task.popen.stderr.fileno(): task.stderr}
        open_pipes = len(buffers)
        draining_until: float | None = None
        with selectors.DefaultSelector() as selector:
            for fd in (*buffers, task.wake_r):
                selector.register(fd, selectors.EVENT_READ)
            while open_pipes:
                events = selector.select(timeout=None if draining_until is None else 0)
                if draining_until is not None and (not events or time.monotonic() > draining_until):
                    return
                for key, _mask in events:
                    if key.fd == task.wake_r:
                        selector.unregister(task.wake_r)
                        draining_until = time.monotonic() + 1.0
                        continue
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fd)
                        open_pipes -= 1
                        continue
                    buffer = buffers[key.fd]
                    keep = max(0, min(len(data), cap - len(buffer)))
                    buffer += data[:keep]
                    task.dropped += len(data) - keep

    def _finish(self, task: _Task, output_done: bool) -> None:
        if task.cgroup is not None:
            _remove_cgroup(task.cgroup)
        if task.pidfd is not None:
            os.close(task.pidfd)
        if output_done:  # else the output thread still uses them (it stops within a second of the wake-up)
            for pipe in (task.popen.stdout, task.popen.stderr):
                if pipe is not None:
                    pipe.close()
            os.close(task.wake_r)
            os.close(task.wake_w)
        returncode = task.popen.returncode
        with self._lock:
            if self._tasks.get(task.launch.task_id) is task:
                del self._tasks[task.launch.task_id]
            outcome = task.reason or ("completed" if returncode == 0 else "failed")
            idle = not self._tasks
        if idle and self._base is not None:
            self._remove_idle_base(self._base)
        finished = Finished(task.launch.task_id, outcome, returncode, bytes(task.stdout), bytes(task.stderr),
                            task.dropped, task.duration_s)
        log.info("task %s %s (returncode %s)", task.launch.task_id, outcome, returncode)
        try:
            self._on_finished(finished)
        except Exception:
            log.exception("on_finished failed for task %s", task.launch.task_id)
        finally:
            task.done.set()

    # -- stopping --

    def running(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._tasks)

    def stop(self, task_id: str, grace_s: float | None = None) -> bool:
        """Stop one task (outcome "stopped"); False when no such task runs. Blocks until it is over."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return False
            if task.reason is None and not task.exited:
                task.reason = "stopped"
            task.stoppers += 1
        try:
            _terminate([task.target], self.grace_s if grace_s is None else grace_s, self._everyone)
        finally:
            self._release([task])
        self._await([task])
        return True

    def stop_all(self, grace_s: float | None = None) -> StopReport:
        """The kill switch's step: SIGTERM every task at once, one shared grace period, SIGKILL what is left,
        confirm none remains, reap, and wait for each task's Finished. Idempotent; `start` works afterwards."""
        began = time.monotonic()
        with self._lock:
            tasks = list(self._tasks.values())  # those whose main exited may still have leftovers: include them
            interrupted = tuple(t.launch.task_id for t in tasks if not t.exited)
            for task in tasks:
                if task.reason is None and not task.exited:
                    task.reason = "stopped"
                task.stoppers += 1
        try:
            outcome = _terminate([t.target for t in tasks], self.grace_s if grace_s is None else grace_s,
                                 self._everyone)
        finally:
            self._release(tasks)
        self._await(tasks)
        report = StopReport(interrupted, outcome.remaining, self.containment, outcome.forced,
                            time.monotonic() - began)
        log.info("stop_all: %d task(s) interrupted, %d forced, %d remaining, %.0f ms", len(interrupted),
                 outcome.forced, len(outcome.remaining), report.elapsed_s * 1000)
        return report

    def _release(self, tasks: list[_Task]) -> None:
        with self._lock:
            for task in tasks:
                task.stoppers -= 1
            self._stopped.notify_all()

    def _await(self, tasks: list[_Task]) -> None:
        """Wait for the watchers to report (they reap the main processes and remove the cgroups)."""
        me = threading.current_thread()
        deadline = time.monotonic() + KILL_CONFIRM_S + 3
        for task in tasks:
            if task.watcher is not me and not task.done.wait(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("task %s: its watcher has not finished", task.launch.task_id)

    def sweep(self) -> tuple[int, ...]:
        """At agent start: kill every process still carrying this runner's tag (left by an earlier run that
        crashed) and remove leftover task cgroups; returns the pids killed. This runner's own tasks are spared."""
        with self._start_lock:
            with self._lock:
                own = {task.value for task in self._tasks.values()}
                own_ids = set(self._tasks)
            base = self._base if self._base is not None else _cgroup_base(self.tag)[0]
            leftovers = []
            if base is not None and base.is_dir():
                leftovers = [entry for entry in base.iterdir()
                             if entry.is_dir() and not entry.name.startswith(".") and entry.name not in own_ids]
            key = f"{self.tag}/.sweep"
            target = _Target(key=key, prefix=f"{self.tag}/", exclude=frozenset(own), cgroups=leftovers)
            outcome = _terminate([target], self.grace_s, everyone=True)
            if not outcome.remaining:
                _REAPER.forget(key)
            for cgroup in leftovers:
                _remove_cgroup(cgroup)
        if outcome.signalled or leftovers:
            log.warning("sweep: killed %d process(es) and removed %d cgroup(s) left by an earlier run",
                        len(outcome.signalled), len(leftovers))
        return tuple(sorted(outcome.signalled))

    def close(self) -> None:
        """stop_all, then remove this runner's cgroup directory."""
        self.stop_all()
        if self._base is not None:
            try:
                self._base.rmdir()
            except FileNotFoundError:
                pass
            except OSError as error:
                log.warning("could not remove %s: %s (run sweep)", self._base, error)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

