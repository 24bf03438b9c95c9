"""Every command, operation, event, end reason and exit code is documented; a test fails when one is not."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

from agent.cli import build_parser
from agent.errors import ExitCode
from agent.protocol import EVENTS, OPERATIONS
from agent.session import EndReason

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


def test_every_operation_and_event_is_in_docs_control_api_md() -> None:
    text = (DOCS / "control-api.md").read_text()
    missing = [name for name in [*OPERATIONS, *EVENTS] if f"`{name}`" not in text]
    assert not missing, f"undocumented operations or events: {missing}"


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
