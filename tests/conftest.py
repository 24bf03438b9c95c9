"""Shared test set-up: headless Qt, no proxy or CA variables leaking in, real temporary directories."""

from __future__ import annotations

import os

# Set before any Qt import: tests are headless whatever the user's environment says.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402

from tests.summary import SCRUBBER_FIGURES  # noqa: E402

# The fixtures two test files share live in helper modules, loaded here as plugins. Imported into the
# test files they would look unused to ruff (F401, F811); and a test file's own `pytest_plugins` would
# come too late for assertion rewriting, because it imports the helper's classes first.
pytest_plugins = ["tests.audit_env", "tests.bundle_fixtures", "tests.control_server", "tests.shared_fixtures"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy and CA variables must never change what a test connects to or trusts."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy",
                 "HTTP_PROXY", "http_proxy", "ALL_PROXY", "NOTIFY_SOCKET", "SERVICEGATE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="run the tests marked slow (CI=true runs them anyway)")


def _run_slow(config: pytest.Config) -> bool:
    return os.environ.get("CI") == "true" or bool(config.getoption("--slow"))


def pytest_report_header(config: pytest.Config) -> str:
    return "slow tests: " + ("run" if _run_slow(config) else "deselected (they run in CI, or with --slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests run in CI and with --slow, and are deselected otherwise (a developer's `make test`).
    `needs_root` tests create real users and groups. They skip only off CI when not root: in CI
    (CI=true, run as root) they must run, and a CI run without root fails them instead of skipping."""
    if not _run_slow(config):
        slow = [item for item in items if "slow" in item.keywords]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if "slow" not in item.keywords]
    if os.geteuid() == 0 or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason="creates real users and groups: run as root (CI does)")
    for item in items:
        if "needs_root" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The log scrubber's recall and false positives on the labelled corpus (tests/test_telemetry_scrubber.py)."""
    figures = config.stash.get(SCRUBBER_FIGURES, None)
    if figures is not None:
        terminalreporter.write_line(figures)
