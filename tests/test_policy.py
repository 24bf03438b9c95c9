"""agent.policy.decide: every (effective level x flags x session kind x engineer restriction x confirmation)
combination against a table written out by hand, plus the rules around it."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.policy import Restriction, Verdict, decide, load_restrictions
from agent.protocol import AccessLevel, SessionKind, SessionState
from agent.session import Engineer, Session
from agent.tasks import TaskKind

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
ENGINEER = Engineer("E-1001", "Dana Field", "Acme Imaging")

# flags (P: may touch patient data, C: changes the system, A: application support), session kind (S: service,
# X: application support), effective level (L: limited, F: full) -> verdict, and a word the reason contains.
# Unrestricted and not yet confirmed. Written by hand from the rules in agent/policy.py's docstring.
TABLE = """
-   S L allow -          | -   S F allow -          | -   X L allow -         | -   X F allow -
P   S L deny  full       | P   S F allow -          | P   X L deny  service   | P   X F deny  service
C   S L deny  full       | C   S F allow -          | C   X L deny  service   | C   X F deny  service
PC  S L deny  full       | PC  S F allow -          | PC  X L deny  service   | PC  X F deny  service
A   S L deny  application| A   S F deny  application| A   X L ask   confirms  | A   X F ask   confirms
PA  S L deny  application| PA  S F deny  application| PA  X L deny  full      | PA  X F ask   confirms
CA  S L deny  application| CA  S F deny  application| CA  X L deny  full      | CA  X F ask   confirms
PCA S L deny  application| PCA S F deny  application| PCA X L deny  full      | PCA X F ask   confirms
"""
FLAG_LETTERS = {"P": "patient_data", "C": "changes_system", "A": "application_support"}
KINDS = {"S": SessionKind.SERVICE, "X": SessionKind.APPLICATION_SUPPORT}
LEVELS = {"L": AccessLevel.LIMITED, "F": AccessLevel.FULL}


def rows() -> list[tuple[str, str, str, str, str]]:
    parsed = []
    for line in TABLE.strip().splitlines():
        for cell in line.split("|"):
            flags, kind, level, verdict, word = cell.split()
            parsed.append((flags, kind, level, verdict, word))
    return parsed


def task_with(flags: str, kind: str = "some-task") -> TaskKind:
    return TaskKind(kind=kind, title="t", command=("/bin/true",),
                    **{FLAG_LETTERS[letter]: True for letter in flags if letter != "-"})


def session_with(kind: SessionKind, level: AccessLevel, state: SessionState = SessionState.ACTIVE) -> Session:
    return Session(id="12345678", kind=kind, engineer=ENGINEER, reason="r", requested_level=level, state=state,
                   created_at=NOW, state_since=NOW, effective_level=level, activated_at=NOW)


# Restrictions: none; a rule for this engineer's company allowing technical tasks only; a rule for this engineer
# allowing only another kind; a rule for another company (does not apply).
RESTRICTIONS = {
    "none": (),
    "technical-only": (Restriction(company="acme imaging", flags=frozenset()),),
    "other-kind-only": (Restriction(engineer="E-1001", kinds=frozenset({"collect-logs"})),),
    "other-company": (Restriction(company="Other Corp", flags=frozenset(), kinds=frozenset()),),
}


def expected(flags: str, verdict: str, word: str, restriction: str, confirmed: bool) -> tuple[str, str]:
    """The table's entry under a restriction: a rule that applies denies before anything else checks."""
    if restriction == "other-kind-only":
        return "deny", "only the tasks"
    if restriction == "technical-only" and flags != "-":
        return "deny", "does not allow"
    if verdict == "ask" and confirmed:
        return "allow", "-"
    return verdict, word


CASES = [(*row, restriction, confirmed) for row, restriction, confirmed
         in itertools.product(rows(), RESTRICTIONS, (False, True))]


def test_the_table_covers_every_combination() -> None:
    combos = {(flags, kind, level) for flags, kind, level, _, _ in rows()}
    assert len(combos) == len(rows()) == 8 * 2 * 2
    assert len(CASES) == 8 * 2 * 2 * len(RESTRICTIONS) * 2


@pytest.mark.parametrize(("flags", "kind", "level", "verdict", "word", "restriction", "confirmed"), CASES)
def test_decision_table(flags: str, kind: str, level: str, verdict: str, word: str, restriction: str,
                        confirmed: bool) -> None:
    want_verdict, want_word = expected(flags, verdict, word, restriction, confirmed)
    decision = decide(task_with(flags), session_with(KINDS[kind], LEVELS[level]), "E-1001",
                      RESTRICTIONS[restriction], confirmed=confirmed)
    assert decision.verdict is Verdict(want_verdict), decision.reason
    if want_word != "-":
        assert want_word in decision.reason
    assert decision.allowed == (want_verdict == "allow")


@pytest.mark.parametrize("state", [s for s in SessionState if s is not SessionState.ACTIVE])
def test_only_an_active_session_runs_tasks(state: SessionState) -> None:
    decision = decide(task_with("-"), session_with(SessionKind.SERVICE, AccessLevel.FULL, state), "E-1001")
    assert decision.verdict is Verdict.DENY
    assert state.value in decision.reason


def test_no_session_and_another_engineer_are_denied() -> None:
    assert decide(task_with("-"), None, "E-1001").verdict is Verdict.DENY
    other = decide(task_with("-"), session_with(SessionKind.SERVICE, AccessLevel.FULL), "E-9999")
    assert other.verdict is Verdict.DENY
    assert "E-9999" in other.reason


def test_a_narrowed_session_loses_full_tasks() -> None:
    session = session_with(SessionKind.SERVICE, AccessLevel.FULL)
    assert decide(task_with("C"), session, "E-1001").allowed
    narrowed = replace(session, effective_level=AccessLevel.LIMITED)
    assert decide(task_with("C"), narrowed, "E-1001").verdict is Verdict.DENY


def test_a_screen_is_shared_only_in_a_session_claimed_at_the_console_with_the_disclaimer() -> None:
    screen = replace(task_with("A", "share-screen"), screen=True)
    requested = session_with(SessionKind.APPLICATION_SUPPORT, AccessLevel.LIMITED)  # the portal asked, under a grant
    refused = decide(screen, requested, ENGINEER.id, ())
    assert refused.verdict is Verdict.DENY
    assert "typed in at the console" in refused.reason
    claimed = replace(requested, claimed=True, confirmed_by="tech")
    assert decide(screen, claimed, ENGINEER.id, ()).verdict is Verdict.ASK  # the control: then the question
    assert decide(task_with("A"), requested, ENGINEER.id, ()).verdict is Verdict.ASK  # other tasks need no claim


def test_a_catalog_level_above_the_flags_counts() -> None:
    task = replace(task_with("-"), level=AccessLevel.FULL)
    assert task.required_level is AccessLevel.FULL
    assert decide(task, session_with(SessionKind.SERVICE, AccessLevel.LIMITED), "E-1001").verdict is Verdict.DENY


def test_restrictions_match_by_engineer_or_company_and_all_matching_rules_apply() -> None:
    session = session_with(SessionKind.SERVICE, AccessLevel.FULL)
    logs = task_with("-", "collect-logs")
    fetch = task_with("P", "fetch-study")
    by_id = (Restriction(engineer="E-1001", kinds=frozenset({"collect-logs", "fetch-study"})),)
    assert decide(fetch, session, "E-1001", by_id).allowed
    both = (*by_id, Restriction(company="ACME IMAGING ", flags=frozenset({"changes_system"})))
    assert decide(logs, session, "E-1001", both).allowed
    denied = decide(fetch, session, "E-1001", both)
    assert denied.verdict is Verdict.DENY
    assert "patient data" in denied.reason
    everyone = (Restriction(kinds=frozenset({"collect-logs"})),)
    assert decide(fetch, session, "E-1001", everyone).verdict is Verdict.DENY
    assert decide(logs, session, "E-1001", everyone).allowed


def test_restrictions_file(tmp_path: Path) -> None:
    path = tmp_path / "restrictions.toml"
    path.write_text('[[restrict]]\ncompany = "Acme Imaging"\nflags = []\n\n'
                    '[[restrict]]\nengineer = "E-7"\nkinds = ["collect-logs"]\n')
    rules = load_restrictions(path)
    assert rules == (Restriction(company="Acme Imaging", flags=frozenset()),
                     Restriction(engineer="E-7", kinds=frozenset({"collect-logs"})))
    assert load_restrictions(None) == ()


@pytest.mark.parametrize(("text", "message"), [
    ('[[restrict]]\ncompany = "A"\n', "neither"),
    ('[[restrict]]\ncompany = "A"\nflags = ["root"]\n', "'root' is not a flag"),
    ('[[restrict]]\nwho = "A"\nflags = []\n', "unknown key 'who'"),
    ('[[restrict]]\ncompany = 3\nflags = []\n', "text"),
    ('[[restrict]]\ncompany = "A"\nkinds = "collect-logs"\n', "list of names"),
    ("[limits]\nx = 1\n", r"only \[\[restrict\]\]"),
    ('[[restrict]\n', "not valid TOML"),
])
def test_bad_restrictions_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "restrictions.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_restrictions(path)
    assert str(path) in str(caught.value)
