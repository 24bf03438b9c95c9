"""Shared test set-up: headless Qt, no proxy or CA variables leaking in, real temporary directories."""

from __future__ import annotations

import os

# Set before any Qt import: tests are headless whatever the user's environment says.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402

# The fixtures two test files share live in helper modules, loaded here as plugins. Imported into the
# test files they would look unused to ruff (F401, F811); and a test file's own `pytest_plugins` would
# come too late for assertion rewriting, because it imports the helper's classes first.
pytest_plugins = ["tests.audit_env", "tests.control_server"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy and CA variables must never change what a test connects to or trusts."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy",
                 "HTTP_PROXY", "http_proxy", "ALL_PROXY", "NOTIFY_SOCKET", "SERVICEGATE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
