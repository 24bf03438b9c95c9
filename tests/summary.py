"""Figures a test reports at the end of the run (printed by tests/conftest.py's terminal summary)."""

from __future__ import annotations

import pytest

SCRUBBER_FIGURES = pytest.StashKey[str]()
