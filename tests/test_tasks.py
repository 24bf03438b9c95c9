"""The task catalog (agent.tasks): parsing and its error messages, parameter checks against argument injection,
path confinement, argv building; and the agent's own task programs (agent.builtin_tasks) run as real
subprocesses, the way the task runner starts them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent import __version__, builtin_tasks
from agent.errors import ConfigError, UsageError
from agent.protocol import AccessLevel
from agent.tasks import DEFAULT_CATALOG, TaskKind, build_argv, check_params, confine, load_catalog, parse_catalog

REPO = Path(__file__).resolve().parents[1]
CATALOG = load_catalog(None)
ISSUE_KINDS = {"collect-logs", "system-report", "run-diagnostics", "restart-service", "fetch-file", "fetch-study",
               "apply-config", "adjust-protocol", "share-screen"}
# the update channel's, never an engineer's
UPDATE_KINDS = {"install-virus-patterns", "install-software", "install-configuration"}
MODALITY = ("/opt/modality/bin/python", "/opt/modality/service_tool.py")


def one_task(body: str) -> TaskKind:
    """The single task of a catalog made of `body` after `[[task]]`."""
    (task,) = parse_catalog("[[task]]\n" + body, "test.toml").kinds.values()
    return task


FREE_TEXT = one_task('kind = "note"\ncommand = ["/usr/bin/logger", "{note}"]\n[task.params.note]\ntype = "text"\n')


# ---- the default catalog --------------------------------------------------------------------------------


def test_the_default_catalog_offers_every_kind_of_the_issue() -> None:
    assert set(CATALOG.kinds) == ISSUE_KINDS | UPDATE_KINDS
    assert {kind for kind, task in CATALOG.kinds.items() if task.update} == UPDATE_KINDS
    assert CATALOG.source == "the built-in catalog"
    assert parse_catalog(DEFAULT_CATALOG, "x").kinds == CATALOG.kinds


@pytest.mark.parametrize(("kind", "flags"), [
    ("collect-logs", set()),
    ("system-report", set()),
    ("run-diagnostics", set()),
    ("restart-service", {"changes_system"}),
    ("fetch-file", {"patient_data"}),  # a log or a file may hold patient data
    ("fetch-study", {"patient_data"}),
    ("apply-config", {"changes_system"}),
    ("adjust-protocol", {"application_support"}),
    ("share-screen", {"application_support"}),
])
def test_default_flags(kind: str, flags: set[str]) -> None:
    task = CATALOG.get(kind)
    assert task.flags == flags
    assert task.level is AccessLevel.LIMITED
    assert task.to_dict()["flags"] == sorted(flags)
    needed = AccessLevel.FULL if flags & {"patient_data", "changes_system"} else AccessLevel.LIMITED
    assert task.required_level is needed
    assert task.to_dict()["level"] == needed.value


def test_system_changing_tasks_can_be_restored_and_builtin_ones_run_the_agents_programs() -> None:
    for kind in ("run-diagnostics", "restart-service", "apply-config", "adjust-protocol"):
        assert CATALOG.get(kind).restore[0] == "{modality}"
    for kind in ("collect-logs", "system-report", "fetch-file"):
        assert CATALOG.get(kind).command[:2] == ("{builtin}", kind)


def test_an_unknown_kind_names_what_the_device_offers() -> None:
    with pytest.raises(UsageError, match="unknown task kind 'reboot'.*collect-logs"):
        CATALOG.get("reboot")


# ---- catalog errors: one message naming the file and saying what to write -------------------------------

TASK = '[[task]]\nkind = "k"\ncommand = ["/usr/bin/tool", "{value}"]\n'
PARAM = '[task.params.value]\ntype = "text"\n'


@pytest.mark.parametrize(("text", "expected"), [
    (TASK + 'colour = "red"\n' + PARAM, ["(k): unknown key 'colour'", "allowed: kind, title, command"]),
    ('[[task]]\nkind = "Collect Logs"\ncommand = ["/bin/true"]\n', ["kind = 'Collect Logs'", 'like "collect-logs"']),
    ('[[task]]\ncommand = ["/bin/true"]\n', ["kind = None", "lower-case letters, digits and dashes"]),
    (TASK + PARAM + TASK + PARAM, ["task kind 'k' is defined twice", "give each kind once"]),
    ('[[task]]\nkind = "k"\ncommand = "/usr/bin/tool"\n', ["command = '/usr/bin/tool'", "as a list of strings"]),
    ('[[task]]\nkind = "k"\ncommand = []\n', ["command = []", "as a list of strings"]),
    ('[[task]]\nkind = "k"\n', ["command = None", "as a list of strings"]),
    ('[[task]]\nkind = "k"\ncommand = ["/usr/bin/tool", ""]\n', ["as a list of strings"]),
    ('[[task]]\nkind = "k"\ncommand = ["/usr/bin/tool", "--x={value}"]\n' + PARAM,
     ["'--x={value}'", "a placeholder must be a whole element"]),
    ('[[task]]\nkind = "k"\ncommand = ["/usr/bin/tool", "{nope}"]\n',
     ["{nope} is neither a parameter of this task nor one of {modality}, {builtin}, {output}"]),
    ('[[task]]\nkind = "k"\ncommand = ["/usr/bin/tool"]\nrestore = ["/usr/bin/tool", "{value}"]\n' + PARAM,
     ["restore: {value} is neither a parameter"]),
    ('[[task]]\nkind = "k"\ncommand = ["ls", "/var/log"]\n', ["the program 'ls' must be an absolute path",
                                                              "the search path is never used"]),
    ('[[task]]\nkind = "k"\ncommand = ["{value}"]\n' + PARAM, ["the program '{value}' must be an absolute path"]),
    (TASK + 'level = "root"\n' + PARAM, ["level = 'root'", 'needs "limited" or "full"']),
    (TASK + 'output = "email"\n' + PARAM, ["unknown key 'output'"]),
    (TASK + 'changes_system = "yes"\n' + PARAM, ["changes_system = 'yes'", "write true or false"]),
    (TASK + "timeout_s = 0\n" + PARAM, ["timeout_s = 0", "whole seconds from 1 to 86400"]),
    (TASK + "timeout_s = 90000\n" + PARAM, ["timeout_s = 90000", "whole seconds from 1 to 86400"]),
    (TASK + "timeout_s = true\n" + PARAM, ["timeout_s = True", "whole seconds"]),
    (TASK + 'title = " "\n' + PARAM, ["title = ' '", "give a short description"]),
    (TASK + '[task.params.value]\ntype = "float"\n', ["parameter 'value': type = 'float'",
                                                      "allowed: text, integer, choice, path, uid"]),
    (TASK + '[task.params.value]\ntype = "choice"\n', ["parameter 'value': a choice needs choices = "]),
    (TASK + '[task.params.value]\ntype = "choice"\nchoices = []\n', ["a choice needs choices = "]),
    (TASK + '[task.params.value]\ntype = "text"\npattern = "[a-"\n', ["pattern '[a-' is not a regular expression"]),
    (TASK + '[task.params.value]\ntype = "integer"\nminimum = "0"\n', ["minimum and maximum are whole numbers"]),
    (TASK + '[task.params.value]\ntype = "text"\ncolour = "red"\n', ["parameter 'value': unknown key 'colour'",
                                                                     "allowed: type, help"]),
    (TASK + PARAM + '[task.params.Bad]\ntype = "text"\n', ["parameter 'Bad'", "lower-case letters"]),
    ('[[task]]\nkind = "k"\ncommand = ["/usr/bin/tool", "{output}"]\n[task.params.output]\ntype = "text"\n',
     ["parameter 'output'", "not a reserved placeholder name"]),
    (TASK + 'params = "value"\n', ["params must be a table"]),
    ('[tasks]\nkind = "k"\n', ["holds only [[task]] tables", "found ['tasks']"]),
    ("", ["holds only [[task]] tables", "found none"]),
    ("[[task]\n", ["not valid TOML", "fix the syntax"]),
])
def test_bad_catalogs_name_the_file_and_say_what_to_write(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message
    assert "\n" not in message


def test_a_task_that_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text('task = ["collect-logs"]\n')
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_catalog(path)


def test_a_missing_or_undecodable_catalog_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read the task catalog") as caught:
        load_catalog(missing)
    assert str(caught.value).startswith(str(missing))
    assert "[tasks] catalog" in str(caught.value)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[[task]]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_catalog(binary)


def test_a_catalog_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text('[[task]]\nkind = "dump-config"\ntitle = "Dump"\ncommand = ["/usr/bin/tool", "{what}"]\n'
                    'level = "full"\ntimeout_s = 5\n[task.params.what]\ntype = "choice"\n'
                    'help = "Which part"\nchoices = ["a", "b"]\n')
    catalog = load_catalog(path)
    assert catalog.source == str(path)
    task = catalog.get("dump-config")
    assert (task.level, task.timeout_s, task.restore) == (AccessLevel.FULL, 5, ())
    assert task.to_dict()["params"] == [{"name": "what", "type": "choice", "help": "Which part", "choices": ["a", "b"]}]


# ---- check_params: every value checked before anything runs ---------------------------------------------

DIAGNOSTICS = CATALOG.get("run-diagnostics")


def test_valid_values_come_back_as_strings() -> None:
    assert check_params(DIAGNOSTICS, {"suite": "quick", "seconds": 60}, []) == {"suite": "quick", "seconds": "60"}
    assert check_params(DIAGNOSTICS, {"suite": "full", "seconds": "1500"}, []) == {"suite": "full", "seconds": "1500"}
    assert check_params(DIAGNOSTICS, {"suite": "full", "seconds": 0}, [])["seconds"] == "0"
    assert check_params(CATALOG.get("system-report"), {}, []) == {}
    uid = "1.2.840.10008.5.1.4.1.1.2.0"
    assert check_params(CATALOG.get("fetch-study"), {"study_uid": uid}, []) == {"study_uid": uid}
    assert check_params(FREE_TEXT, {"note": "a" * 256}, []) == {"note": "a" * 256}


def test_a_missing_or_an_extra_parameter() -> None:
    with pytest.raises(UsageError, match="needs parameter 'seconds' \\(a whole number from 0 to 1500\\)"):
        check_params(DIAGNOSTICS, {"suite": "quick"}, [])
    with pytest.raises(UsageError, match="has no parameter 'verbose'; its parameters: suite, seconds"):
        check_params(DIAGNOSTICS, {"suite": "quick", "seconds": 5, "verbose": True}, [])
    with pytest.raises(UsageError, match="its parameters: none"):
        check_params(CATALOG.get("collect-logs"), {"output": "/tmp"}, [])


@pytest.mark.parametrize(("value", "problem"), [
    (1501, "is out of range (a whole number from 0 to 1500)"),
    (-1, "is not a whole number of 0 or more"),
    ("-1", "is not a whole number of 0 or more"),
    ("five", "is not a whole number"),
    ("5.0", "is not a whole number"),
    (5.0, "is not a whole number"),
    (" 5", "is not a whole number"),
    ("1e3", "is not a whole number"),
    ("", "is not a whole number"),
    (True, "is not a whole number"),
    (None, "is not a whole number"),
    ("9" * 19, "is not a whole number"),
])
def test_integers(value: Any, problem: str) -> None:
    with pytest.raises(UsageError, match=re.escape(problem)) as caught:
        check_params(DIAGNOSTICS, {"suite": "quick", "seconds": value}, [])
    assert "parameter 'seconds'" in str(caught.value)


def test_a_choice_must_be_one_of_the_choices() -> None:
    with pytest.raises(UsageError, match="'slow' is not one of quick, full"):
        check_params(DIAGNOSTICS, {"suite": "slow", "seconds": 5}, [])
    with pytest.raises(UsageError, match="is not one of"):
        check_params(DIAGNOSTICS, {"suite": "QUICK", "seconds": 5}, [])


@pytest.mark.parametrize("uid", ["1.2.abc", "1.02", "01.2", "1..2", "1.", ".1", "", "1.2 ", "1,2",
                                 "1." + "2" * 63])
def test_invalid_uids(uid: str) -> None:
    with pytest.raises(UsageError, match="study_uid"):
        check_params(CATALOG.get("fetch-study"), {"study_uid": uid}, [])


def test_a_uid_of_64_characters_is_the_longest() -> None:
    uid = "1." + "2" * 62
    assert check_params(CATALOG.get("fetch-study"), {"study_uid": uid}, []) == {"study_uid": uid}


def test_text_must_match_its_pattern() -> None:
    task = CATALOG.get("apply-config")
    assert check_params(task, {"key": "gain", "value": "1.5"}, []) == {"key": "gain", "value": "1.5"}
    for key in ("Gain", "gain rate", "gain;reboot", "x" * 41):
        with pytest.raises(UsageError, match=re.escape("does not match [a-z_]{1,40}")):
            check_params(task, {"key": key, "value": "1"}, [])


@pytest.mark.parametrize("value", ["-rf", "--help", "-", "--output=/etc/shadow", "a\x00b", "a" * 257, " a", "a\n",
                                   "\ta"])
def test_argument_injection_and_odd_text_are_refused_whatever_the_pattern(value: str) -> None:
    permissive = one_task('kind = "k"\ncommand = ["/usr/bin/tool", "{v}"]\n[task.params.v]\ntype = "text"\n'
                          'pattern = "(?s).*"\n')
    for task, name in ((FREE_TEXT, "note"), (permissive, "v")):
        with pytest.raises(UsageError, match="no leading dash") as caught:
            check_params(task, {name: value}, [])
        assert f"parameter {name!r}" in str(caught.value)
    with pytest.raises(UsageError):
        check_params(CATALOG.get("fetch-study"), {"study_uid": value}, [])


def test_a_choice_or_path_with_a_leading_dash_is_refused_too(tmp_path: Path) -> None:
    dashing = one_task('kind = "k"\ncommand = ["/usr/bin/tool", "{mode}"]\n[task.params.mode]\ntype = "choice"\n'
                       'choices = ["-f", "fast"]\n')
    with pytest.raises(UsageError, match="no leading dash"):
        check_params(dashing, {"mode": "-f"}, [])
    with pytest.raises(UsageError, match="no leading dash"):
        check_params(CATALOG.get("fetch-file"), {"path": "-rf"}, [tmp_path])


def test_text_values_must_be_text() -> None:
    with pytest.raises(UsageError, match="must be text"):
        check_params(FREE_TEXT, {"note": 5}, [])
    with pytest.raises(UsageError, match="must be text"):
        check_params(FREE_TEXT, {"note": ["a", "b"]}, [])


def test_an_unbounded_integer_is_described_without_none() -> None:
    task = one_task('kind = "k"\ncommand = ["/usr/bin/tool", "{n}"]\n[task.params.n]\ntype = "integer"\n')
    with pytest.raises(UsageError) as caught:
        check_params(task, {}, [])
    assert "None" not in str(caught.value)


# ---- confine: absolute, no `..`, inside the allowed folders once every link is resolved ------------------


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """allowed/ (with sub/ and a few files) and outside/ with a secret, side by side."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "service.log").write_text("inside\n")
    (allowed / "sub" / "deep.log").write_text("deep\n")
    (outside / "secret.txt").write_text("secret\n")
    return {"allowed": allowed, "outside": outside, "root": tmp_path}


def test_a_file_inside_is_accepted_as_its_real_path(tree: dict[str, Path]) -> None:
    allowed = tree["allowed"]
    assert confine(str(allowed / "service.log"), [allowed]) == (allowed / "service.log").resolve()
    assert confine(str(allowed / "sub" / "deep.log"), [tree["outside"], allowed]) == \
        (allowed / "sub" / "deep.log").resolve()


def test_a_relative_path_is_refused(tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree["root"])
    with pytest.raises(UsageError, match="give an absolute path"):
        confine("allowed/service.log", [tree["allowed"]])


@pytest.mark.parametrize("tail", ["sub/../service.log", "../allowed/service.log", "sub/..", "../outside/secret.txt"])
def test_dot_dot_is_refused_even_when_it_lands_inside(tree: dict[str, Path], tail: str) -> None:
    with pytest.raises(UsageError, match="a path with '..' is refused"):
        confine(f"{tree['allowed']}/{tail}", [tree["allowed"]])


def test_an_absolute_path_outside_is_refused(tree: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match="is outside the folders a task may read") as caught:
        confine(str(tree["outside"] / "secret.txt"), [tree["allowed"]])
    assert str(tree["allowed"]) in str(caught.value)
    with pytest.raises(UsageError, match="outside"):
        confine("/etc/passwd", [tree["allowed"]])
    with pytest.raises(UsageError, match="none are configured"):
        confine(str(tree["allowed"] / "service.log"), [])


def test_a_symlink_inside_pointing_outside_is_refused(tree: dict[str, Path]) -> None:
    link = tree["allowed"] / "innocent.log"
    link.symlink_to(tree["outside"] / "secret.txt")
    with pytest.raises(UsageError, match="outside the folders") as caught:
        confine(str(link), [tree["allowed"]])
    assert f"it leads to {(tree['outside'] / 'secret.txt').resolve()}" in str(caught.value)


def test_a_symlinked_folder_inside_pointing_outside_is_refused(tree: dict[str, Path]) -> None:
    (tree["allowed"] / "linked").symlink_to(tree["outside"], target_is_directory=True)
    with pytest.raises(UsageError, match="outside the folders"):
        confine(str(tree["allowed"] / "linked" / "secret.txt"), [tree["allowed"]])
    with pytest.raises(UsageError, match="outside the folders"):
        confine(str(tree["allowed"] / "linked"), [tree["allowed"]])


def test_a_symlink_to_another_file_inside_is_accepted(tree: dict[str, Path]) -> None:
    link = tree["allowed"] / "current.log"
    link.symlink_to("sub/deep.log")
    assert confine(str(link), [tree["allowed"]]) == (tree["allowed"] / "sub" / "deep.log").resolve()


@pytest.mark.parametrize("name", ["missing.log", "sub/missing/x.log"])
def test_a_missing_file_is_refused(tree: dict[str, Path], name: str) -> None:
    with pytest.raises(UsageError, match="no such file"):
        confine(str(tree["allowed"] / name), [tree["allowed"]])


def test_dangling_and_looping_symlinks_are_refused(tree: dict[str, Path]) -> None:
    (tree["allowed"] / "dangling").symlink_to(tree["allowed"] / "gone")
    (tree["allowed"] / "loop").symlink_to(tree["allowed"] / "loop")
    for name in ("dangling", "loop"):
        with pytest.raises(UsageError, match="no such file"):
            confine(str(tree["allowed"] / name), [tree["allowed"]])


def test_an_allowed_folder_that_is_itself_a_symlink(tree: dict[str, Path]) -> None:
    alias = tree["root"] / "alias"
    alias.symlink_to(tree["allowed"], target_is_directory=True)
    real = (tree["allowed"] / "service.log").resolve()
    assert confine(str(tree["allowed"] / "service.log"), [alias]) == real
    assert confine(str(alias / "service.log"), [tree["allowed"]]) == real
    assert confine(str(alias / "service.log"), [alias]) == real
    with pytest.raises(UsageError, match="outside"):
        confine(str(tree["outside"] / "secret.txt"), [alias])


def test_the_allowed_folder_itself_and_a_missing_allowed_folder(tree: dict[str, Path]) -> None:
    assert confine(str(tree["allowed"]), [tree["allowed"]]) == tree["allowed"].resolve()
    assert confine(f"{tree['allowed']}/", [tree["allowed"]]) == tree["allowed"].resolve()
    assert confine(str(tree["allowed"] / "service.log"), [tree["root"] / "gone", tree["allowed"]]) == \
        (tree["allowed"] / "service.log").resolve()
    sibling = tree["root"] / "allowed-not"  # its name starts like the allowed folder's
    sibling.mkdir()
    (sibling / "x").write_text("x")
    with pytest.raises(UsageError, match="outside"):
        confine(str(sibling / "x"), [tree["allowed"]])


def test_a_path_parameter_is_confined(tree: dict[str, Path]) -> None:
    task = CATALOG.get("fetch-file")
    link = tree["allowed"] / "current.log"
    link.symlink_to(tree["allowed"] / "service.log")
    assert check_params(task, {"path": str(link)}, [tree["allowed"]]) == \
        {"path": str((tree["allowed"] / "service.log").resolve())}
    with pytest.raises(UsageError, match="outside"):
        check_params(task, {"path": str(tree["outside"] / "secret.txt")}, [tree["allowed"]])


# ---- build_argv: placeholders become whole elements ------------------------------------------------------


def test_modality_expands_to_the_tools_elements(tmp_path: Path) -> None:
    values = check_params(DIAGNOSTICS, {"suite": "quick", "seconds": 60}, [])
    argv = build_argv(DIAGNOSTICS.command, values, modality=MODALITY, output=tmp_path)
    assert argv == (*MODALITY, "diagnostics", "--suite", "quick", "--seconds", "60")
    assert build_argv(DIAGNOSTICS.restore, {}, modality=MODALITY, output=tmp_path) == \
        (*MODALITY, "restore", "diagnostics")


def test_builtin_and_output(tmp_path: Path) -> None:
    task = CATALOG.get("fetch-file")
    argv = build_argv(task.command, {"path": "/var/log/x.log"}, modality=(), output=tmp_path / "out")
    assert argv == (sys.executable, "-m", "agent.builtin_tasks", "fetch-file", "/var/log/x.log",
                    str(tmp_path / "out"))
    assert build_argv(CATALOG.get("system-report").command, {}, modality=(), output=tmp_path)[3:] == \
        ("system-report", str(tmp_path))


@pytest.mark.parametrize("value", ["a; rm -rf /", "$(reboot) `id` | tee /etc/passwd > x && y", "two words",
                                   "'quoted' \"twice\"", "{output}", "*"])
def test_a_value_stays_one_argument(tmp_path: Path, value: str) -> None:
    values = check_params(FREE_TEXT, {"note": value}, [])
    assert build_argv(FREE_TEXT.command, values, modality=(), output=tmp_path) == ("/usr/bin/logger", value)
    echo = one_task(f'kind = "echo"\ncommand = [{json.dumps(sys.executable)}, "-c", '
                    '"import json, sys; print(json.dumps(sys.argv[1:]))", "{note}"]\n'
                    '[task.params.note]\ntype = "text"\n')
    argv = build_argv(echo.command, check_params(echo, {"note": value}, []), modality=(), output=tmp_path)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout) == [value]


def test_modality_without_a_tool_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=re.escape("none is configured ([modality] tool in agent.toml)")):
        build_argv(CATALOG.get("restart-service").command, {"service": "viewer"}, modality=(), output=tmp_path)


# ---- the built-in task programs, as the task runner starts them -----------------------------------------


def run_builtin(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SERVICEGATE_") and name != "DISPLAY"}
    env.update({f"SERVICEGATE_{name.upper()}": value for name, value in variables.items()})
    return subprocess.run([sys.executable, "-m", "agent.builtin_tasks", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)


def test_install_patterns_switches_current_keeps_the_one_before_and_checks_the_hash(tmp_path: Path) -> None:
    folder = tmp_path / "patterns"
    versions = {}
    for version in ("2026.1", "2026.2", "2026.3"):
        file = tmp_path / f"patterns-{version}.dat"
        file.write_bytes(f"signatures {version}\n".encode() * 100)
        versions[version] = file
        done = run_builtin("install-patterns", str(file), version, hashlib.sha256(file.read_bytes()).hexdigest(),
                           pattern_dir=str(folder))
        assert done.returncode == 0, done.stderr
        assert (folder / "current").readlink() == Path(version)
        assert (folder / "current" / file.name).read_bytes() == file.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["2026.2", "2026.3", "current"]  # in use, and the one before
    wrong = run_builtin("install-patterns", str(versions["2026.1"]), "2026.4", "0" * 64, pattern_dir=str(folder))
    assert wrong.returncode == 2
    assert "does not have the approved sha256; nothing was installed" in wrong.stderr
    assert (folder / "current").readlink() == Path("2026.3")
    assert not (folder / "2026.4").exists()
    unset = run_builtin("install-patterns", str(versions["2026.1"]), "2026.5", "0" * 64)
    assert unset.returncode == 2
    assert "SERVICEGATE_PATTERN_DIR is not set" in unset.stderr


def test_a_screen_task_must_be_application_support_so_the_technologist_confirms_it() -> None:
    assert CATALOG.get("share-screen").screen
    assert [k for k, t in CATALOG.kinds.items() if t.screen] == ["share-screen"]
    with pytest.raises(ConfigError, match="screen = true needs application_support = true"):
        parse_catalog('[[task]]\nkind = "peek"\ncommand = ["{builtin}", "share-screen"]\nscreen = true\n', "c.toml")


@pytest.mark.parametrize(("variables", "words"), [
    ({}, "SERVICEGATE_VNC_PORT is not a port number"),
    ({"vnc_port": "5900"}, "SERVICEGATE_VNC_PASSWORD is not set"),
    ({"vnc_port": "5900", "vnc_password": "Ab3dEf7h"}, "DISPLAY '' is not a local X display"),
])
def test_share_screen_runs_only_as_the_agent_starts_it(variables: dict[str, str], words: str) -> None:
    refused = run_builtin("share-screen", **variables)
    assert refused.returncode == 2
    assert words in refused.stderr


def test_install_configuration_checks_the_rules_before_it_switches(tmp_path: Path) -> None:
    """The vendor's threshold rules are installed only when the agent's own parser takes them: a file with a mistake
    leaves `current` where it was and no folder of its version."""
    folder = tmp_path / "configuration"
    good = tmp_path / "thresholds-ct.toml"
    good.write_text('[[rule]]\nname = "memory-high"\nmetric = "system.memory.utilization"\ncomparison = ">"\n'
                    'limit = 0.5\n')
    done = run_builtin("install-configuration", str(good), "3", hashlib.sha256(good.read_bytes()).hexdigest(),
                       config_dir=str(folder))
    assert done.returncode == 0, done.stderr
    assert (folder / "current").readlink() == Path("3")
    assert (folder / "current" / "thresholds.toml").read_bytes() == good.read_bytes()
    bad = tmp_path / "thresholds-bad.toml"
    bad.write_text('[[rule]]\nname = "memory-high"\nmetric = "system.memory.utilisation"\ncomparison = ">"\n'
                   'limit = 0.5\n')
    refused = run_builtin("install-configuration", str(bad), "4", hashlib.sha256(bad.read_bytes()).hexdigest(),
                          config_dir=str(folder))
    assert refused.returncode == 2
    assert "Nothing was installed; tell the vendor." in refused.stderr
    assert "system.memory.utilisation" in refused.stderr  # names the mistake
    assert (folder / "current").readlink() == Path("3")
    assert sorted(p.name for p in folder.iterdir()) == ["3", "current"]
    unset = run_builtin("install-configuration", str(good), "5", hashlib.sha256(good.read_bytes()).hexdigest())
    assert unset.returncode == 2
    assert "SERVICEGATE_CONFIG_DIR is not set" in unset.stderr


def test_collect_logs_copies_the_tails(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    (logs / "app.log").write_bytes(b"0123456789abcdefghij")
    (logs / "old" / "app.log").write_bytes(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    (logs / "short.log").write_bytes(b"tiny\n")
    (logs / "empty.log").write_bytes(b"")
    files = [logs / "app.log", logs / "old" / "app.log", logs / "short.log", logs / "empty.log"]
    out = tmp_path / "out" / "logs"
    result = run_builtin("collect-logs", str(out), log_files=os.pathsep.join(map(str, files)), log_tail_bytes="10")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    copies = {path.name: path.read_bytes() for path in out.iterdir()}
    assert copies == {"app.log": b"abcdefghij", "app-2.log": b"QRSTUVWXYZ", "short.log": b"tiny\n", "empty.log": b""}
    assert result.stdout.splitlines() == ["app.log 10 bytes", "app-2.log 10 bytes", "short.log 5 bytes",
                                          "empty.log 0 bytes"]


def test_collect_logs_reports_a_missing_file_and_copies_the_rest(tmp_path: Path) -> None:
    present = tmp_path / "present.log"
    present.write_bytes(b"x" * 100)
    missing = tmp_path / "missing.log"
    result = run_builtin("collect-logs", str(tmp_path / "out"),
                         log_files=os.pathsep.join([str(missing), str(tmp_path), str(present)]))
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["present.log 100 bytes"]
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert str(missing) in lines[0]
    assert "No such file" in lines[0]
    assert str(tmp_path) in lines[1]  # a folder is not a log file
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["present.log"]


def test_collect_logs_fails_when_nothing_could_be_copied_and_says_so_when_nothing_is_configured(
        tmp_path: Path) -> None:
    failed = run_builtin("collect-logs", str(tmp_path / "out"), log_files=str(tmp_path / "missing.log"))
    assert failed.returncode == 1
    assert "missing.log" in failed.stderr
    assert "Traceback" not in failed.stderr
    none = run_builtin("collect-logs", str(tmp_path / "none"), log_files="")
    assert none.returncode == 0
    assert "nothing collected" in none.stdout
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_the_default_tail_is_4_mib_and_a_bad_tail_is_usage(tmp_path: Path) -> None:
    assert builtin_tasks.LOG_TAIL_BYTES == 4 * 1024 * 1024
    bad = run_builtin("collect-logs", str(tmp_path / "out"), log_files=str(tmp_path), log_tail_bytes="lots")
    assert bad.returncode == 2
    assert "SERVICEGATE_LOG_TAIL_BYTES" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_system_report_is_technical_and_holds_no_addresses(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_builtin("system-report", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "system-report.txt"
    text = (out / "system-report.txt").read_text()
    for line in (r"^memory: total \d", r"^swap: total ", f"^servicegate: {re.escape(__version__)}$", r"^python: 3\.",
                 r"^kernel: ", r"^os: ", r"^uptime: \d+ d ", r"^cpus: \d+ logical", r"^load average"):
        assert re.search(line, text, re.MULTILINE), line
    assert re.search(r"^\[Disks\]\n(/.*: total .* free |no disk partitions found)", text, re.MULTILINE)
    for name in psutil.net_if_stats():
        assert re.search(f"^{re.escape(name)}: (up|down), speed ", text, re.MULTILINE)
    addresses = {a.address for nic in psutil.net_if_addrs().values() for a in nic
                 if a.address and (a.family in (socket.AF_INET, socket.AF_INET6)
                                   or (a.family == psutil.AF_LINK and a.address.strip("0:")))}
    assert addresses
    quads = set(re.findall(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])", text))
    assert not quads & addresses
    for address in addresses:
        assert address.split("%")[0] not in text or len(address) < 4, address
    assert str(tmp_path) not in text  # its own command line names the output folder: no command lines
    assert len(re.findall(r"^\S.* \(pid \d+\): rss ", text, re.MULTILINE)) <= builtin_tasks.TOP_PROCESSES


def test_fetch_file_copies_an_allowed_file(tree: dict[str, Path]) -> None:
    out = tree["root"] / "out"
    link = tree["allowed"] / "current.log"
    link.symlink_to("sub/deep.log")
    result = run_builtin("fetch-file", str(tree["allowed"] / "service.log"), str(out),
                         allowed_dirs=os.pathsep.join([str(tree["root"] / "gone"), str(tree["allowed"])]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "service.log 7 bytes"
    assert (out / "service.log").read_text() == "inside\n"
    # A link to another file inside was allowed by the agent's check; the copy is named as asked.
    assert run_builtin("fetch-file", str(link), str(out), allowed_dirs=str(tree["allowed"])).returncode == 0
    assert (out / "current.log").read_text() == "deep\n"


@pytest.mark.parametrize("case", ["symlink-out", "folder-link-out", "outside", "dot-dot", "folder", "no-dirs",
                                  "relative"])
def test_fetch_file_refuses(tree: dict[str, Path], case: str) -> None:
    allowed = tree["allowed"]
    (allowed / "innocent.log").symlink_to(tree["outside"] / "secret.txt")
    (allowed / "linked").symlink_to(tree["outside"], target_is_directory=True)
    path, dirs, word = {
        "symlink-out": (allowed / "innocent.log", allowed, "outside"),
        "folder-link-out": (allowed / "linked" / "secret.txt", allowed, "outside"),
        "outside": (tree["outside"] / "secret.txt", allowed, "outside"),
        "dot-dot": (f"{allowed}/../outside/secret.txt", allowed, "'..'"),
        "folder": (allowed / "sub", allowed, "not a regular file"),
        "no-dirs": (allowed / "service.log", "", "none are configured"),
        "relative": ("allowed/service.log", allowed, "absolute path"),
    }[case]
    out = tree["root"] / "out"
    result = run_builtin("fetch-file", str(path), str(out), allowed_dirs=str(dirs))
    assert result.returncode == 2
    assert word in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
    assert "secret" not in result.stdout


@pytest.mark.parametrize("swap", ["file", "folder"])
def test_fetch_file_refuses_a_path_swapped_for_a_link_after_the_check(
        tree: dict[str, Path], swap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Between the check and the open, the file (or a folder on its way) becomes a link out: O_NOFOLLOW, one
    component at a time, refuses it."""
    allowed = tree["allowed"]
    target = allowed / "sub" / "deep.log"
    checked = confine  # the very function agent.builtin_tasks imported

    def confine_then_swap(text: str, dirs: Any) -> Path:
        real = checked(text, dirs)
        if swap == "file":
            target.unlink()
            target.symlink_to(tree["outside"] / "secret.txt")
        else:
            (allowed / "sub").rename(allowed / "sub-old")
            (allowed / "sub").symlink_to(tree["outside"], target_is_directory=True)
            (tree["outside"] / "deep.log").write_text("secret\n")
        return real

    monkeypatch.setattr(builtin_tasks, "confine", confine_then_swap)
    out = tree["root"] / "out"
    code = builtin_tasks.main(["fetch-file", str(target), str(out)], {"SERVICEGATE_ALLOWED_DIRS": str(allowed)})
    assert code == 2
    assert "changed after it was checked" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("args", [["reboot"], [], ["collect-logs"], ["fetch-file", "/x"],
                                  ["system-report", "a", "b"], ["collect-logs", ""], ["--help"]])
def test_bad_usage_is_one_line_and_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert builtin_tasks.main(args, {}) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert "usage:" in captured.err


def test_an_unknown_command_as_a_subprocess_exits_2_without_a_traceback() -> None:
    result = run_builtin("format-disk", "/")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown command 'format-disk'" in result.stderr


def test_the_builtin_programs_import_nothing_heavy_from_the_agent() -> None:
    code = "import sys, agent.builtin_tasks; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('agent', 'telemetry', 'anonymizer', 'pydicom', 'requests', 'cryptography')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                            check=True)
    assert result.stdout.strip() == str(["agent", "agent.builtin_tasks", "agent.errors", "agent.fsutil",
                                         "agent.protocol", "agent.tasks", "agent.versions"])
