"""Version numbers as ServiceGate compares them: digits and dots (1.2.3, 2026.12.5), part by part as numbers, so
that 2026.10 is newer than 2026.9. One place for the agent's updates, its install tasks and the installer."""

from __future__ import annotations

import re

VERSION = re.compile(r"\d+(\.\d+)*")


def version_key(version: str) -> tuple[int, ...]:
    """The sort key of `version`; ValueError when it is not digits and dots."""
    if not VERSION.fullmatch(version):
        raise ValueError(f"version {version!r} is not of the form 1.2.3")
    return tuple(int(part) for part in version.split("."))
