"""Programs the runner's tests run as tasks: `python tests/task_programs.py MODE PIDDIR [ARG]`.

Every process a mode makes writes a file `<role>.<pid>` into PIDDIR once it is ready (signal handlers set), holding
its start time from /proc/PID/stat (with the pid, that names one process: pids are reused), so a test can wait for
all of them and afterwards check that none remains.

Modes:
- `cooperative`: sleeps until SIGTERM, then exits 0.
- `ignore-term`: ignores SIGTERM and sleeps (needs SIGKILL).
- `tree`: two children, each with a grandchild; all sleep (SIGTERM ends them).
- `double-fork-setsid`: forks; the child calls setsid, forks a grandchild that ignores SIGTERM and sleeps, and
  exits; the original reaps the child and sleeps. The grandchild escaped the process group and the session.
- `leave-children`: like `tree` plus a double-forked setsid escapee that ignores SIGTERM, then the main process
  exits 0 on its own, leaving them all behind.
- `hidden-escapee`: like `double-fork-setsid`, but the grandchild re-executes itself with an EMPTY environment
  (mode `hidden`: no tag any more, ignores SIGTERM, sleeps). Only a cgroup still holds it.
- `chatty N`: writes N bytes to stdout and N to stderr, then exits 0.
- `exit N`: exits with status N.
- `sleep S`: sleeps S seconds, then exits 0.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot) from /proc/PID/stat; with the pid it names one process, since
    pids are reused. None when there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


def ready(piddir: Path, role: str) -> None:
    pid = os.getpid()
    tmp = piddir / f".{role}.{pid}.tmp"
    tmp.write_text(str(start_time(pid)))
    tmp.rename(piddir / f"{role}.{pid}")


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def in_child(body: Callable[[], None]) -> int:
    """Fork; the child runs `body()` and never returns from here."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def sleeper(piddir: Path, role: str, ignore_term: bool = False) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore_term else signal.SIG_DFL)
    ready(piddir, role)
    sleep_forever()


def tree(piddir: Path) -> None:
    for n in range(2):
        def child(n: int = n) -> None:
            in_child(lambda: sleeper(piddir, f"grandchild{n}"))
            sleeper(piddir, f"child{n}")

        in_child(child)


def double_fork_setsid(piddir: Path, role: str) -> None:
    def intermediate() -> None:
        os.setsid()
        in_child(lambda: sleeper(piddir, role, ignore_term=True))
        ready(piddir, "intermediate")

    os.waitpid(in_child(intermediate), 0)


def wait_for_files(piddir: Path, count: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while len([p for p in piddir.iterdir() if not p.name.startswith(".")]) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(list(piddir.iterdir()))} of {count} processes became ready")
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    mode, piddir = argv[0], Path(argv[1])
    arg = argv[2] if len(argv) > 2 else ""
    if mode == "cooperative":
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        ready(piddir, "main")
        sleep_forever()
    elif mode == "ignore-term":
        sleeper(piddir, "main", ignore_term=True)
    elif mode == "tree":
        tree(piddir)
        ready(piddir, "main")
        sleep_forever()
    elif mode == "double-fork-setsid":
        double_fork_setsid(piddir, "escapee")
        ready(piddir, "main")
        sleep_forever()
    elif mode == "leave-children":
        tree(piddir)
        double_fork_setsid(piddir, "escapee")
        ready(piddir, "main")
        wait_for_files(piddir, 7)  # main, 2 children, 2 grandchildren, intermediate, escapee
        return 0
    elif mode == "hidden-escapee":
        def intermediate() -> None:
            os.setsid()
            in_child(lambda: os.execve(sys.executable, [sys.executable, __file__, "hidden", str(piddir)], {}))
            ready(piddir, "intermediate")

        os.waitpid(in_child(intermediate), 0)
        ready(piddir, "main")
        sleep_forever()
    elif mode == "hidden":
        sleeper(piddir, "hidden", ignore_term=True)
    elif mode == "chatty":
        size = int(arg)
        ready(piddir, "main")
        sys.stdout.buffer.write(b"o" * size)
        sys.stderr.buffer.write(b"e" * size)
        return 0
    elif mode == "exit":
        ready(piddir, "main")
        return int(arg)
    elif mode == "sleep":
        ready(piddir, "main")
        time.sleep(float(arg))
        return 0
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
