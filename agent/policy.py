"""Which task an engineer may run in a session: `decide(task, session, engineer)`. Pure; no clock, no I/O.

The rules, in the order they are checked (the first that fails gives the reason):

1. The session is active, and the engineer asking is the session's engineer.
2. Site IT's restrictions (`[tasks] restrictions`): every rule that names the engineer's ID or
   company (or names neither: everyone) must allow the task's kind and each of its flags.
3. Application-support tasks need an application-support session. Tasks that change the system or
   may touch patient data need a service session (an application specialist's session is for the
   scan protocols and the screen; a technical, read-only task is fine in either kind).
4. The session's effective level reaches the task's required level: technical tasks LIMITED (or the
   higher level their catalog entry names), tasks that change the system or may touch patient
   data FULL.
5. Application-support tasks wait for the technologist's confirmation at the console (ASK) until
   it is given.

Anything else is allowed. Every decision is audited by the caller (agent.core).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.protocol import AccessLevel, SessionKind, SessionState
from agent.session import Session
from agent.tasks import FLAGS, TaskKind

_RULE_KEYS = ("engineer", "company", "kinds", "flags")


class Verdict(StrEnum):
    ALLOW = "allow"
    ASK = "ask"  # allowed once the technologist confirms it at the console
    DENY = "deny"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


@dataclass(frozen=True)
class Restriction:
    """One rule of site IT: for `engineer` (an ID) or `company` (neither: everyone), only these task kinds
    (None: any) and only these flags (None: any; empty: technical tasks only)."""

    engineer: str = ""
    company: str = ""
    kinds: frozenset[str] | None = None
    flags: frozenset[str] | None = None

    def applies_to(self, engineer_id: str, company: str) -> bool:
        if self.engineer and self.engineer != engineer_id:
            return False
        return not self.company or self.company.strip().casefold() == company.strip().casefold()

    def who(self) -> str:
        return (f"engineer {self.engineer}" if self.engineer else "") + \
            (" of " if self.engineer and self.company else "") + \
            (f"company {self.company}" if self.company else "") or "every engineer"


def decide(task: TaskKind, session: Session | None, engineer_id: str,
           restrictions: Sequence[Restriction] = (), *, confirmed: bool = False) -> Decision:
    if task.update:
        return _deny("it installs an update: only the update channel runs it, after the technologist approved the "
                     "update at the console")
    if session is None or session.state is not SessionState.ACTIVE:
        state = session.state.value if session else "no session"
        return _deny(f"tasks run only in an active session (this one is {state})")
    if engineer_id != session.engineer.id:
        return _deny(f"engineer {engineer_id!r} is not the engineer of session {session.id}")
    for rule in restrictions:
        if not rule.applies_to(engineer_id, session.engineer.company):
            continue
        if rule.kinds is not None and task.kind not in rule.kinds:
            return _deny(f"site IT allows {rule.who()} only the tasks {', '.join(sorted(rule.kinds)) or 'none'}")
        refused = sorted(task.flags - (rule.flags if rule.flags is not None else frozenset(FLAGS)))
        if refused:
            words = ", ".join(_FLAG_WORDS[f] for f in refused)
            return _deny(f"site IT does not allow {rule.who()} tasks {words}")
    if task.screen and not (session.claimed and session.confirmed_by):
        return _deny("the screen is shared only in a session whose ID the technologist typed in at the console and "
                     "whose privacy disclaimer they confirmed")
    if task.application_support and session.kind is not SessionKind.APPLICATION_SUPPORT:
        return _deny("an application-support task needs an application-support session")
    if not task.application_support and session.kind is SessionKind.APPLICATION_SUPPORT and \
            (task.changes_system or task.patient_data):
        return _deny("a task that changes the system or may touch patient data needs a service session, not "
                     "application support")
    need = task.required_level
    level = session.effective_level or AccessLevel.NO_ACCESS
    if level.rank < need.rank:
        return _deny(f"the task needs {need.value} access; this session has {level.value}")
    if task.application_support and not confirmed:
        return Decision(Verdict.ASK, "the technologist confirms application-support tasks at the console")
    return Decision(Verdict.ALLOW, f"allowed at {level.value}")


def _deny(reason: str) -> Decision:
    return Decision(Verdict.DENY, reason)


_FLAG_WORDS = {"patient_data": "touching patient data", "changes_system": "changing the system",
               "application_support": "application support"}


def load_restrictions(path: Path | None) -> tuple[Restriction, ...]:
    """Site IT's rules from a TOML file of [[restrict]] tables (None: no restrictions)."""
    if path is None:
        return ()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the task restrictions ({exc.strerror}); fix [tasks] restrictions "
                          "in agent.toml, or leave it empty") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    rules = data.get("restrict", [])
    if set(data) - {"restrict"} or not isinstance(rules, list):
        raise ConfigError(f"{path}: the restrictions file holds only [[restrict]] tables")
    return tuple(_rule(raw, f"{path}: rule {number}") for number, raw in enumerate(rules, 1))


def _rule(raw: dict[str, Any], where: str) -> Restriction:
    for key in raw:
        if key not in _RULE_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(_RULE_KEYS)}")
    texts = {key: raw.get(key, "") for key in ("engineer", "company")}
    if not all(isinstance(v, str) for v in texts.values()):
        raise ConfigError(f"{where}: engineer and company are text (an engineer's ID, a company's name)")
    lists: dict[str, frozenset[str] | None] = {}
    for key in ("kinds", "flags"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where}: {key} is a list of names, like [\"collect-logs\"]")
        lists[key] = frozenset(value) if value is not None else None
    unknown = sorted((lists["flags"] or frozenset()) - set(FLAGS))
    if unknown:
        raise ConfigError(f"{where}: flags: {unknown[0]!r} is not a flag; allowed: {', '.join(FLAGS)}")
    if lists["kinds"] is None and lists["flags"] is None:
        raise ConfigError(f"{where}: a rule restricts kinds, flags or both; it has neither")
    return Restriction(engineer=texts["engineer"].strip(), company=texts["company"].strip(), kinds=lists["kinds"],
                       flags=lists["flags"])
