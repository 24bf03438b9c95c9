"""Engineers' time-based one-time passwords (RFC 6238): the check the agent makes before a session becomes active.

Six digits, a 30-second step, HMAC-SHA-1 (what authenticator apps use), computed by `cryptography`'s TOTP
primitive. Around it, what the primitive leaves to its caller:

- **Window**: the code of the current step or of the one before (a code read out just before the step turned
  still counts); nothing older, nothing from the future.
- **Replay**: a code, once accepted, is never accepted again: the highest step used is remembered, and a code
  of that step or an earlier one is refused. (`Verifier.last_step` is persisted by the caller.)
- **Lockout**: after `MAX_FAILURES` wrong codes for one session the verifier refuses everything for it; the
  session ends with `auth_failed`, and only a new session can try again.

The secret is 160 bits (RFC 4226's recommendation), one per device, made at enrollment and shared with the
portal. The module is pure: the time comes in as an argument.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

DIGITS = 6
STEP_S = 30
SECRET_BYTES = 20  # 160 bits
MAX_FAILURES = 10


class Outcome(Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"  # not the code of the current or the previous step (or not six digits)
    REPLAYED = "replayed"  # right for its step, but that step (or a later one) was used already
    LOCKED = "locked"  # too many wrong codes for this session: nothing is accepted any more


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def code_at(secret: bytes, when: float) -> str:
    """The code for the time `when` (seconds since the epoch)."""
    return TOTP(secret, DIGITS, SHA1(), STEP_S).generate(int(when)).decode()


@dataclass
class Verifier:
    """One session's checks. `last_step` is the highest step accepted for the device (shared by its sessions,
    so a code used for one session cannot be replayed for the next)."""

    secret: bytes
    last_step: int = -1
    failures: int = 0

    def check(self, code: str, now: float) -> Outcome:
        if self.failures >= MAX_FAILURES:
            return Outcome.LOCKED
        code = code.strip().replace(" ", "")
        step = int(now) // STEP_S
        if len(code) == DIGITS and code.isdigit():
            for candidate in (step, step - 1):
                if hmac.compare_digest(code_at(self.secret, candidate * STEP_S), code):
                    if candidate <= self.last_step:
                        return self._failed(Outcome.REPLAYED)
                    self.last_step = candidate
                    return Outcome.ACCEPTED
        return self._failed(Outcome.WRONG)

    def _failed(self, outcome: Outcome) -> Outcome:
        self.failures += 1
        return Outcome.LOCKED if self.failures >= MAX_FAILURES and outcome is Outcome.WRONG else outcome
