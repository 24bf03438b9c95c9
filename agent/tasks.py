"""The task catalog: the only things a remote engineer can make the device do. Never a shell.

A task kind is a program and its arguments (an argv list, run without a shell), typed parameters
whose values are checked before anything runs, the lowest access level it needs, three flags
(may touch patient data, changes the system, application support; none set means a technical
task), a timeout, and an optional restore command run when the task is stopped early. What a
task writes into its output folder is handled by what each file is (agent.taskrun), whatever the
task: DICOM through the anonymizer, text through the log scrubber, anything else quarantined until
the technologist releases it at the console.

The catalog is a TOML file (`[tasks] catalog`; the built-in DEFAULT_CATALOG otherwise):

    [[task]]
    kind = "restart-service"
    title = "Restart a modality service"
    command = ["{modality}", "restart-service", "{service}"]
    restore = ["{modality}", "restore", "service"]
    level = "limited"                 # the lowest level; the flags may raise it (agent.policy)
    changes_system = true
    timeout_s = 120
    [task.params.service]
    type = "choice"
    choices = ["acquisition", "reconstruction", "viewer"]

In `command` and `restore`, an element that is exactly `{modality}` becomes the modality's service
tool (`[modality] tool`, several elements), `{builtin}` the agent's own task programs
(agent.builtin_tasks), `{output}` the task's output folder, `{name}` the checked value of parameter
`name`. Nothing is substituted inside a longer element, so a value can never add an argument.
Parameter types: text (with an optional `pattern`), integer (`minimum`, `maximum`), choice
(`choices`), path (absolute, inside `[tasks] allowed_dirs` after resolving symlinks, no `..`), uid
(a DICOM UID). Every mistake in a catalog is one message naming the file, the task and the key.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, UsageError
from agent.protocol import AccessLevel

PARAM_TYPES = ("text", "integer", "choice", "path", "uid")
FLAGS = ("patient_data", "changes_system", "application_support")
_KIND = re.compile(r"[a-z][a-z0-9-]{0,39}")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_TEXT_MAX = 256
_TASK_KEYS = ("kind", "title", "command", "restore", "level", *FLAGS, "update", "screen", "timeout_s", "params")
# The kind of update (agent.updates.KINDS) -> the catalog's task that installs it.
UPDATE_TASKS = {"virus-patterns": "install-virus-patterns", "software": "install-software",
                "configuration": "install-configuration"}
_PARAM_KEYS = ("type", "help", "pattern", "minimum", "maximum", "choices")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    help: str = ""
    pattern: str = ""
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskKind:
    kind: str
    title: str
    command: tuple[str, ...]
    params: tuple[Param, ...] = ()
    level: AccessLevel = AccessLevel.LIMITED
    patient_data: bool = False
    changes_system: bool = False
    application_support: bool = False
    timeout_s: int = 300
    restore: tuple[str, ...] = ()
    update: bool = False  # installs an update: run only by the update channel after an approval, never by an engineer
    screen: bool = False  # serves the console's screen on a loopback VNC port, which the agent relays (agent.screen)

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(flag for flag in FLAGS if getattr(self, flag))

    @property
    def required_level(self) -> AccessLevel:
        """The level a session needs for it: FULL for a task that changes the system or may touch patient data,
        else the catalog's `level` (LIMITED unless it says FULL)."""
        return AccessLevel.FULL if self.changes_system or self.patient_data else self.level

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "level": self.required_level.value, "flags": sorted(self.flags),
                "update": self.update, "screen": self.screen, "timeout_s": self.timeout_s,
                "restorable": bool(self.restore),
                "params": [{"name": p.name, "type": p.type, "help": p.help, **({"choices": list(p.choices)}
                                                                              if p.choices else {})}
                           for p in self.params]}


# The default catalog: what a vendor's engineer needs on most service calls. The modality's own
# actions go through its service tool ({modality}: on this machine the simulator, portal/sim_modality.py).
DEFAULT_CATALOG = """
[[task]]
kind = "collect-logs"
title = "Collect the modality's log files"
command = ["{builtin}", "collect-logs", "{output}"]
timeout_s = 120

[[task]]
kind = "system-report"
title = "Collect a technical system report"
command = ["{builtin}", "system-report", "{output}"]
timeout_s = 60

[[task]]
kind = "run-diagnostics"
title = "Run the modality's diagnostics"
command = ["{modality}", "diagnostics", "--suite", "{suite}", "--seconds", "{seconds}"]
restore = ["{modality}", "restore", "diagnostics"]
timeout_s = 1800
[task.params.suite]
type = "choice"
choices = ["quick", "full"]
[task.params.seconds]
type = "integer"
help = "How long the diagnostics run"
minimum = 0
maximum = 1500

[[task]]
kind = "restart-service"
title = "Restart a modality service"
command = ["{modality}", "restart-service", "{service}"]
restore = ["{modality}", "restore", "service"]
changes_system = true
timeout_s = 120
[task.params.service]
type = "choice"
choices = ["acquisition", "reconstruction", "viewer"]

[[task]]
kind = "fetch-file"
title = "Fetch a file from an allowed folder (held until the technologist releases it)"
command = ["{builtin}", "fetch-file", "{path}", "{output}"]
patient_data = true
timeout_s = 120
[task.params.path]
type = "path"

[[task]]
kind = "fetch-study"
title = "Fetch a DICOM study (de-identified before it leaves)"
command = ["{modality}", "export-study", "{study_uid}", "{output}"]
patient_data = true
timeout_s = 600
[task.params.study_uid]
type = "uid"

[[task]]
kind = "apply-config"
title = "Apply a configuration change"
command = ["{modality}", "set-config", "{key}", "{value}"]
restore = ["{modality}", "restore", "config"]
changes_system = true
timeout_s = 60
[task.params.key]
type = "text"
pattern = "[a-z_]{1,40}"
[task.params.value]
type = "text"
pattern = "[A-Za-z0-9_.-]{1,40}"

[[task]]
kind = "adjust-protocol"
title = "Adjust a scan protocol (application support)"
command = ["{modality}", "set-protocol", "{protocol}", "{field}", "{value}"]
restore = ["{modality}", "restore", "protocol"]
application_support = true
timeout_s = 60
[task.params.protocol]
type = "text"
pattern = "[a-z0-9-]{1,40}"
[task.params.field]
type = "text"
pattern = "[a-z_]{1,40}"
[task.params.value]
type = "text"
pattern = "[A-Za-z0-9_.-]{1,40}"

[[task]]
kind = "share-screen"
title = "Share the console's screen with the engineer (application support)"
command = ["{builtin}", "share-screen"]
application_support = true
screen = true
timeout_s = 28800

[[task]]
kind = "install-virus-patterns"
title = "Install virus patterns (an approved update)"
command = ["{builtin}", "install-patterns", "{file}", "{version}", "{sha256}"]
changes_system = true
update = true
timeout_s = 600
[task.params.file]
type = "path"
[task.params.version]
type = "text"
pattern = "[0-9]+([.][0-9]+){0,3}"
[task.params.sha256]
type = "text"
pattern = "[0-9a-f]{64}"

[[task]]
kind = "install-software"
title = "Hand a ServiceGate software update to the upgrade service (an approved update)"
command = ["{builtin}", "install-software", "{file}", "{version}", "{sha256}"]
changes_system = true
update = true
timeout_s = 600
[task.params.file]
type = "path"
[task.params.version]
type = "text"
pattern = "[0-9]+([.][0-9]+){0,3}"
[task.params.sha256]
type = "text"
pattern = "[0-9a-f]{64}"

[[task]]
kind = "install-configuration"
title = "Install the vendor's threshold rules (an approved configuration update)"
command = ["{builtin}", "install-configuration", "{file}", "{version}", "{sha256}"]
changes_system = true
update = true
timeout_s = 60
[task.params.file]
type = "path"
[task.params.version]
type = "text"
pattern = "[0-9]+([.][0-9]+){0,3}"
[task.params.sha256]
type = "text"
pattern = "[0-9a-f]{64}"
"""


@dataclass(frozen=True)
class Catalog:
    kinds: Mapping[str, TaskKind] = field(default_factory=dict)
    source: str = "the built-in catalog"

    def get(self, kind: str) -> TaskKind:
        try:
            return self.kinds[kind]
        except KeyError:
            raise UsageError(f"unknown task kind {kind!r}; this device offers: {', '.join(self.kinds)}") from None


def load_catalog(path: Path | None) -> Catalog:
    """The catalog in `path` (None: DEFAULT_CATALOG). Raises ConfigError naming file, task and key."""
    if path is None:
        return parse_catalog(DEFAULT_CATALOG, "the built-in catalog")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the task catalog ({exc.strerror}); fix [tasks] catalog in "
                          "agent.toml, or leave it empty for the built-in catalog") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the task catalog is not UTF-8 text") from None
    return parse_catalog(text, str(path))


def parse_catalog(text: str, where: str) -> Catalog:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc}); fix the syntax") from None
    unknown = set(data) - {"task"}
    if unknown or not isinstance(data.get("task"), list):
        raise ConfigError(f"{where}: a task catalog holds only [[task]] tables; found {sorted(unknown) or 'none'}")
    kinds: dict[str, TaskKind] = {}
    for number, raw in enumerate(data["task"], 1):
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: task {number} = {raw!r}; write each task as a [[task]] table")
        task = _task(raw, f"{where}: task {number}")
        if task.kind in kinds:
            raise ConfigError(f"{where}: task kind {task.kind!r} is defined twice; give each kind once")
        kinds[task.kind] = task
    return Catalog(kinds, where)


def _task(raw: dict[str, Any], where: str) -> TaskKind:
    kind = raw.get("kind")
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ConfigError(f"{where}: kind = {kind!r}: give each task a name of lower-case letters, digits and "
                          "dashes, like \"collect-logs\"")
    where = f"{where} ({kind})"
    for key in raw:
        if key not in _TASK_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(_TASK_KEYS)}")
    params = tuple(_param(name, value, where) for name, value in _table(raw, "params", where).items())
    names = {p.name for p in params}
    command = _argv(raw.get("command"), "command", where, names, required=True)
    restore = _argv(raw.get("restore", []), "restore", where, set(), required=False)  # runs without values
    level = raw.get("level", AccessLevel.LIMITED.value)
    if level not in (AccessLevel.LIMITED.value, AccessLevel.FULL.value):
        raise ConfigError(f"{where}: level = {level!r}; a task needs \"limited\" or \"full\"")
    flags = {flag: raw.get(flag, False) for flag in FLAGS}
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {flag} = {value!r}; write true or false")
    update, screen = raw.get("update", False), raw.get("screen", False)
    for key, value in (("update", update), ("screen", screen)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} = {value!r}; write true or false")
    if screen and not flags["application_support"]:
        raise ConfigError(f"{where}: screen = true needs application_support = true: the technologist confirms "
                          "every screen share at the console")
    timeout = raw.get("timeout_s", 300)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 24 * 3600:
        raise ConfigError(f"{where}: timeout_s = {timeout!r}; give whole seconds from 1 to 86400")
    title = raw.get("title", kind)
    if not isinstance(title, str) or not title.strip():
        raise ConfigError(f"{where}: title = {title!r}; give a short description")
    return TaskKind(kind=kind, title=title, command=command, params=params, level=AccessLevel(level),
                    timeout_s=timeout, restore=restore, update=update, screen=screen, **flags)


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table ([task.{key}.NAME])")
    return value


def _argv(value: Any, key: str, where: str, params: set[str], *, required: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or (required and not value):
        raise ConfigError(f"{where}: {key} = {value!r}; write the program and its arguments as a list of strings, "
                          "like [\"{modality}\", \"diagnostics\"] (no shell is ever used)")
    for element in value:
        for name in re.findall(r"\{([^}]*)\}", element):
            if element != "{" + name + "}":
                raise ConfigError(f"{where}: {key}: {element!r}: a placeholder must be a whole element; nothing is "
                                  "substituted inside text")
            if name not in ("modality", "builtin", "output") and name not in params:
                raise ConfigError(f"{where}: {key}: {{{name}}} is neither a parameter of this task nor one of "
                                  "{modality}, {builtin}, {output}")
    if value and value[0] not in ("{modality}", "{builtin}") and not Path(value[0]).is_absolute():
        raise ConfigError(f"{where}: {key}: the program {value[0]!r} must be an absolute path (or {{modality}}, "
                          "{builtin}): the search path is never used")
    return tuple(value)


def _param(name: str, raw: Any, where: str) -> Param:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name) or name in ("modality", "builtin", "output"):
        raise ConfigError(f"{where}: parameter {name!r}: use lower-case letters, digits and _ (and not a "
                          "reserved placeholder name)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: parameter {name!r} must be a table with at least type")
    for key in raw:
        if key not in _PARAM_KEYS:
            raise ConfigError(f"{where}: parameter {name!r}: unknown key {key!r}; allowed: {', '.join(_PARAM_KEYS)}")
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}: parameter {name!r}: type = {kind!r}; allowed: {', '.join(PARAM_TYPES)}")
    choices = raw.get("choices", [])
    if kind == "choice" and (not isinstance(choices, list) or not choices
                             or not all(isinstance(c, str) and c for c in choices)):
        raise ConfigError(f"{where}: parameter {name!r}: a choice needs choices = [\"a\", \"b\"]")
    pattern = raw.get("pattern", "")
    try:
        re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ConfigError(f"{where}: parameter {name!r}: pattern {pattern!r} is not a regular expression "
                          f"({exc})") from None
    bounds = [raw.get("minimum"), raw.get("maximum")]
    if any(b is not None and (not isinstance(b, int) or isinstance(b, bool) or b < 0) for b in bounds):
        raise ConfigError(f"{where}: parameter {name!r}: minimum and maximum are whole numbers of 0 or more (an "
                          "argument never starts with a dash)")
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise ConfigError(f"{where}: parameter {name!r}: minimum {bounds[0]} is above maximum {bounds[1]}")
    unused = [key for key, used_by in (("choices", "choice"), ("pattern", "text")) if key in raw and kind != used_by]
    unused += [key for key in ("minimum", "maximum") if key in raw and kind != "integer"]
    if unused:
        raise ConfigError(f"{where}: parameter {name!r}: {unused[0]} does not apply to type {kind!r}")
    return Param(name=name, type=kind, help=str(raw.get("help", "")), pattern=pattern, minimum=bounds[0],
                 maximum=bounds[1], choices=tuple(choices))


# ---- values: checked before anything runs ----------------------------------------------------------


def check_params(task: TaskKind, given: Mapping[str, Any], allowed_dirs: Sequence[Path]) -> dict[str, str]:
    """Every parameter of `task`, checked; each as the one argument it becomes. Raises UsageError naming the
    parameter, the value's problem and what is allowed."""
    known = {p.name: p for p in task.params}
    extra = sorted(set(given) - set(known))
    if extra:
        raise UsageError(f"task {task.kind!r} has no parameter {extra[0]!r}; its parameters: "
                         f"{', '.join(known) or 'none'}")
    values = {}
    for param in task.params:
        if param.name not in given:
            raise UsageError(f"task {task.kind!r} needs parameter {param.name!r} ({_describe(param)})")
        values[param.name] = _check(param, given[param.name], allowed_dirs, task.kind)
    return values


def _check(param: Param, value: Any, allowed_dirs: Sequence[Path], kind: str) -> str:
    bad = f"task {kind!r}: parameter {param.name!r} = {str(value)[:80]!r} "
    if param.type == "integer":
        number = value if isinstance(value, int) and not isinstance(value, bool) else _int(value)
        if number is None or number < 0:
            raise UsageError(bad + "is not a whole number of 0 or more")
        if (param.minimum is not None and number < param.minimum) or \
                (param.maximum is not None and number > param.maximum):
            raise UsageError(bad + f"is out of range ({_describe(param)})")
        return str(number)
    if not isinstance(value, str):
        raise UsageError(bad + "must be text")
    if "\x00" in value or len(value) > _TEXT_MAX or value != value.strip() or value.startswith("-"):
        raise UsageError(bad + f"is not allowed: at most {_TEXT_MAX} characters, no leading dash, no surrounding "
                               "spaces, no NUL")
    if param.type == "choice" and value not in param.choices:
        raise UsageError(bad + f"is not one of {', '.join(param.choices)}")
    if param.type == "uid" and (len(value) > 64 or not _UID.fullmatch(value)):
        raise UsageError(bad + "is not a DICOM UID (digits and dots, at most 64 characters)")
    if param.type == "text" and param.pattern and not re.fullmatch(param.pattern, value):
        raise UsageError(bad + f"does not match {param.pattern}")
    if param.type == "path":
        return str(confine(value, allowed_dirs))
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value):
        return int(value)
    return None


def _describe(param: Param) -> str:
    if param.type == "choice":
        return "one of " + ", ".join(param.choices)
    if param.type == "integer":
        return "a whole number" + (f" from {param.minimum}" if param.minimum is not None else "") + \
            (f" to {param.maximum}" if param.maximum is not None else "")
    if param.type == "path":
        return "an absolute path inside the allowed folders"
    if param.type == "uid":
        return "a DICOM UID"
    return f"text matching {param.pattern}" if param.pattern else "text"


def confine(text: str, allowed_dirs: Sequence[Path]) -> Path:
    """The real path of `text`, which must be absolute, without `..`, and inside one of `allowed_dirs` once every
    symbolic link is resolved. Raises UsageError saying which rule it broke."""
    given = Path(text)
    if not given.is_absolute():
        raise UsageError(f"{text!r}: give an absolute path (inside {_dirs(allowed_dirs)})")
    if ".." in given.parts:
        raise UsageError(f"{text!r}: a path with '..' is refused; give the file's own path")
    try:
        real = given.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise UsageError(f"{text!r}: no such file") from None
    for folder in allowed_dirs:
        try:
            root = folder.resolve(strict=True)
        except OSError:
            continue
        if real == root or root in real.parents:
            if not os.access(real, os.R_OK):
                raise UsageError(f"{text!r}: the agent may not read it")
            return real
    raise UsageError(f"{text!r} is outside the folders a task may read ({_dirs(allowed_dirs)})"
                     + (f": it leads to {real}" if real != given else ""))


def _dirs(allowed_dirs: Sequence[Path]) -> str:
    return ", ".join(str(d) for d in allowed_dirs) or "none are configured: [tasks] allowed_dirs"


def build_argv(template: Sequence[str], values: Mapping[str, str], *, modality: Sequence[str],
               output: Path) -> tuple[str, ...]:
    """The argv a task runs: placeholders replaced by whole elements (see the module docstring)."""
    builtin = (sys.executable, "-m", "agent.builtin_tasks")
    argv: list[str] = []
    for element in template:
        if element == "{modality}":
            if not modality:
                raise UsageError("this task needs the modality's service tool, and none is configured "
                                 "([modality] tool in agent.toml)")
            argv += modality
        elif element == "{builtin}":
            argv += builtin
        elif element == "{output}":
            argv.append(str(output))
        elif element.startswith("{") and element.endswith("}"):
            argv.append(values[element[1:-1]])
        else:
            argv.append(element)
    return tuple(argv)
