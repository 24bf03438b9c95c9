"""Every command, operation, event, end reason and exit code is documented; a test fails when one is not."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

from agent.cli import build_parser
from agent.errors import ExitCode
from agent.protocol import EVENTS, OPERATIONS, EndReason

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = Path(__file__).resolve().parents[1] / "README.md"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def cli_commands(parser: argparse.ArgumentParser, prefix: str = "servicegate") -> list[str]:
    commands: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = cli_commands(sub, f"{prefix} {name}")
                commands += nested or [f"{prefix} {name}"]
    return commands


def test_every_cli_command_is_in_docs_cli_md() -> None:
    text = (DOCS / "cli.md").read_text()
    commands = cli_commands(build_parser())
    assert "servicegate access set" in commands  # the walk itself works
    missing = [c for c in commands if f"`{c}" not in text]
    assert not missing, f"undocumented commands: {missing}"


def test_every_exit_code_is_in_the_table() -> None:
    text = (DOCS / "cli.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| ", text, re.MULTILINE), f"exit code {int(code)} undocumented"


def test_every_operation_has_a_table_row_with_its_role_and_arguments() -> None:
    text = (DOCS / "control-api.md").read_text()
    for op in OPERATIONS.values():
        row = re.search(rf"^\| `{op.name}` \| (\w+) \|(.*)$", text, re.MULTILINE)
        assert row, f"operation {op.name} has no row in the operations table"
        assert row.group(1) == op.role.value, f"{op.name}: documented role {row.group(1)}, code says {op.role}"
        missing = [arg for arg in op.args if f"`{arg}`" not in row.group(2)]
        assert not missing, f"{op.name}: arguments missing from its row: {missing}"


def test_every_event_is_in_docs_control_api_md() -> None:
    text = (DOCS / "control-api.md").read_text()
    missing = [name for name in EVENTS if not re.search(rf"^\| `{name}` \|", text, re.MULTILINE)]
    assert not missing, f"undocumented events: {missing}"


def cli_options(parser: argparse.ArgumentParser, prefix: str = "servicegate") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(cli_options(sub, f"{prefix} {name}"))
    if prefix != "servicegate" and not found:
        found[prefix] = [o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    return found


def test_every_cli_option_is_on_its_command_row() -> None:
    text = (DOCS / "cli.md").read_text()
    for command, options in cli_options(build_parser()).items():
        row = re.search(rf"^\| `{re.escape(command)}[ `].*$", text, re.MULTILINE)
        assert row, f"{command} has no row in the commands table"
        missing = [o for o in options if o not in row.group(0)]
        assert not missing, f"{command}: options missing from its row: {missing}"


def test_every_end_reason_is_in_docs_sessions_md() -> None:
    text = (DOCS / "sessions.md").read_text()
    missing = [r.value for r in EndReason if f"| `{r.value}` | {r.meaning} |" not in text]
    assert not missing, f"end reasons undocumented or with another meaning: {missing}"


def test_readme_quick_start_and_dependency_table() -> None:
    text = README.read_text()
    assert "make demo" in text
    assert "make test" in text
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["ui"],
              *project["optional-dependencies"]["portal"], *project["optional-dependencies"]["test"],
              *project["optional-dependencies"]["dev"]]
    for requirement in wanted:
        name = re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0]
        assert re.search(rf"^\| `?{re.escape(name)}`? [|(]", text, re.MULTILINE | re.IGNORECASE), \
            f"{name} is not in the README's dependency table"
