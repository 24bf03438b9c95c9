"""The examination block: while a FULL session is active, the scanner takes no examination.

The block is a lease, never a switch. The agent calls the modality's tool (`[modality] tool`) with
`block --lease-s N --by servicegate` and calls it again every `block_renew_s` while it wants the block;
the modality treats the block as lapsed N seconds after the last renewal. So an agent that dies, hangs
or loses its disk never leaves the scanner blocked for longer than one lease.

The hook contract (docs/tasks.md), each an argv after the tool's own, run without a shell, killed
after `hook_timeout_s`:

    block --lease-s N --by WHO   exit 0: blocked until N seconds from now; anything else: failed
    unblock                      exit 0: not blocked (also when it was not); anything else: failed
    block-status                 exit 0 and `blocked` or `unblocked` on stdout

The block is released at every session end (the agent stops wanting it), at agent start (whatever an
earlier run held), by the kill switch, and by the unit's stop hook (`servicegate examinations release`,
which needs no running agent). Renewals run in a thread of their own, so a slow tool never holds up
the agent; each failure is passed to `on_problem` (the agent records it).
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable, Sequence

from agent.config import ModalityConfig
from agent.runner import run_helper

log = logging.getLogger("servicegate.exam_block")


def call(tool: Sequence[str], args: Sequence[str], timeout_s: float) -> tuple[bool, str]:
    """Run one hook: (succeeded, its output or the reason it failed)."""
    try:
        returncode, output = run_helper([*tool, *args], timeout_s)
    except subprocess.TimeoutExpired:
        return False, f"`{args[0]}` did not answer within {timeout_s:g} s"
    except OSError as exc:
        return False, f"`{args[0]}` could not run: {exc.strerror or exc}"
    if returncode != 0:
        detail = output.strip().splitlines()
        return False, f"`{args[0]}` failed (exit {returncode})" + (f": {detail[-1]}" if detail else "")
    return True, output.strip()


def release(config: ModalityConfig) -> tuple[bool, str]:
    """Unblock now (agent start, kill switch, the unit's stop hook). No tool: nothing to release."""
    if not config.tool:
        return True, "no modality tool configured"
    return call(config.tool, ["unblock"], config.hook_timeout_s)


def status(config: ModalityConfig) -> str:
    """`blocked`, `unblocked`, or why it is unknown."""
    if not config.tool:
        return "unknown: no modality tool configured"
    ok, out = call(config.tool, ["block-status"], config.hook_timeout_s)
    return out if ok and out in ("blocked", "unblocked") else f"unknown: {out or 'no answer'}"


class ExamBlock:
    """Holds the block while `want(True)`: blocks at once, renews every `block_renew_s`, releases on `want(False)`.

    `held` is True from the first successful block until the release; `on_change(held)` and `on_problem(text)`
    are called from the block's thread.
    """

    def __init__(self, config: ModalityConfig, on_problem: Callable[[str], object] = lambda text: None,
                 on_change: Callable[[bool], object] = lambda held: None) -> None:
        self.config = config
        self.on_problem = on_problem
        self.on_change = on_change
        self.held = False
        self._wanted = False
        self._wake = threading.Event()
        self._closed = False
        self._failing = False  # a failure is reported once, when it starts; the next success reports nothing
        self._lock = threading.Lock()  # one hook at a time: a release never races a renewal
        self._thread = threading.Thread(target=self._run, name="exam-block", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def want(self, blocked: bool) -> None:
        if blocked != self._wanted:
            self._wanted = blocked
            self._wake.set()

    def release_now(self) -> tuple[bool, str]:
        """Stop wanting the block and release it before returning (the kill switch's step)."""
        self._wanted = False
        with self._lock:
            ok, text = release(self.config)
            self._set_held(False if ok else self.held)
        if not ok:
            self.on_problem(f"could not release the examination block: {text}")
        self._wake.set()
        return ok, text

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.config.hook_timeout_s * 2 + 1)

    def _run(self) -> None:
        while not self._closed:
            with self._lock:
                if self._wanted and self.config.tool:
                    ok, text = call(self.config.tool, ["block", "--lease-s", str(self.config.block_lease_s),
                                                       "--by", "servicegate"], self.config.hook_timeout_s)
                    if ok:
                        self._set_held(True)
                    self._failed(ok, f"could not {'renew' if self.held else 'set'} the examination block: {text}")
                elif self.held:
                    ok, text = release(self.config)
                    if ok:
                        self._set_held(False)
                    self._failed(ok, f"could not release the examination block: {text}")
            self._wake.wait(self.config.block_renew_s if self._wanted or self.held else None)
            self._wake.clear()
        if self.held:
            self.release_now()

    def _failed(self, ok: bool, text: str) -> None:
        """Report a failure once per streak (a tool that keeps failing must not fill the audit log every renewal)."""
        if not ok and not self._failing:
            self.on_problem(text)
        self._failing = not ok

    def _set_held(self, held: bool) -> None:
        if held != self.held:
            self.held = held
            log.info("examination block %s", "held" if held else "released")
            self.on_change(held)
