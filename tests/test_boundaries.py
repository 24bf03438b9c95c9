"""The import-linter contracts list every agent module except the ones a package may use."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
AGENT_MODULES = {f"agent.{p.stem}" for p in (REPO / "agent").glob("*.py") if p.stem != "__init__"}

# What each package may use of the agent, and why.
ALLOWED = {
    "consent_ui": {"agent.client", "agent.protocol", "agent.errors"},  # errors: what the client raises
    "installer": {"agent.config", "agent.errors", "agent.fsutil", "agent.versions"},  # config to validate it; the
    # errors config raises; fsutil and versions (standard library only): the same durable writes and version order
}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_forbidden_lists_cover_every_other_agent_module(package: str) -> None:
    contract = next(c for c in CONTRACTS if c["source_modules"] == [package])
    forbidden = set(contract["forbidden_modules"])
    assert AGENT_MODULES - ALLOWED[package] <= forbidden, "add the new agent module to the contract"
    assert not ALLOWED[package] & forbidden
