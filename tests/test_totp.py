"""Engineers' one-time passwords (agent.totp), with the clock as an argument: the RFC 6238 test vector, the
window, replay and lockout, each beside a positive control."""

from __future__ import annotations

from agent.totp import MAX_FAILURES, SECRET_BYTES, STEP_S, Outcome, Verifier, code_at, new_secret

RFC_SECRET = b"12345678901234567890"  # RFC 6238 Appendix B, SHA-1
NOW = 1_796_000_000.0


def test_codes_match_the_rfc_6238_test_vectors() -> None:
    # The RFC lists 8-digit codes; six digits are their last six.
    assert code_at(RFC_SECRET, 59) == "287082"
    assert code_at(RFC_SECRET, 1111111109) == "081804"
    assert code_at(RFC_SECRET, 2000000000) == "279037"


def test_the_current_and_the_previous_step_count_nothing_else() -> None:
    secret = new_secret()
    assert len(secret) == SECRET_BYTES
    assert Verifier(secret).check(code_at(secret, NOW), NOW) is Outcome.ACCEPTED
    assert Verifier(secret).check(code_at(secret, NOW - STEP_S), NOW) is Outcome.ACCEPTED
    assert Verifier(secret).check(code_at(secret, NOW - 2 * STEP_S), NOW) is Outcome.WRONG
    assert Verifier(secret).check(code_at(secret, NOW + STEP_S), NOW) is Outcome.WRONG
    assert Verifier(secret).check(" " + code_at(secret, NOW)[:3] + " " + code_at(secret, NOW)[3:], NOW) \
        is Outcome.ACCEPTED
    assert Verifier(secret).check("12345a", NOW) is Outcome.WRONG


def test_a_code_once_used_is_never_accepted_again() -> None:
    secret = new_secret()
    verifier = Verifier(secret)
    code = code_at(secret, NOW)
    assert verifier.check(code, NOW) is Outcome.ACCEPTED
    assert verifier.check(code, NOW + 1) is Outcome.REPLAYED
    # Nor the previous step's code after the current one was used.
    assert verifier.check(code_at(secret, NOW - STEP_S), NOW) is Outcome.REPLAYED
    # A later step's code is fine (positive control).
    assert verifier.check(code_at(secret, NOW + STEP_S), NOW + STEP_S) is Outcome.ACCEPTED


def test_ten_wrong_codes_lock_the_session_even_for_the_right_code() -> None:
    secret = new_secret()
    verifier = Verifier(secret)
    wrong = str((int(code_at(secret, NOW)) + 1) % 1_000_000).zfill(6)
    outcomes = [verifier.check(wrong, NOW) for _ in range(MAX_FAILURES)]
    assert outcomes == [Outcome.WRONG] * (MAX_FAILURES - 1) + [Outcome.LOCKED]
    assert verifier.check(code_at(secret, NOW), NOW) is Outcome.LOCKED
    # Nine wrong codes do not lock (positive control).
    fresh = Verifier(secret)
    for _ in range(MAX_FAILURES - 1):
        fresh.check(wrong, NOW)
    assert fresh.check(code_at(secret, NOW), NOW) is Outcome.ACCEPTED
