"""installer.acceptance, line by line. The real thing (an installed, enrolled agent as its own user, a real portal)
is in tests/test_installer_real.py, as root. Here the installed agent's answers (`service.status`, `service.ask`) are
stand-ins, to reach what a healthy agent never says on demand: a kill switch with problems, a log the portal
disagrees with, a session opened while the check waits. `doctor`'s own lines are left out (tests/test_installer.py).
The clock is injected: the waiting for telemetry takes no time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from installer import acceptance, service
from installer.layout import UPGRADE_REQUEST, Layout

URL = "https://portal.vendor.example"


class Installed:
    """What the installed `servicegate` answers, and what site IT's check asked it."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = [self.idle()]
        self.last_push: list[float | None] = [1000.0]
        self.verify: tuple[int, dict[str, Any]] = (0, {"ok": True, "records": 42})
        self.receipt: tuple[int, dict[str, Any]] = (0, {"problems": [], "elapsed_ms": 7, "ended_sessions": []})
        self.asked: list[tuple[str, ...]] = []

    @staticmethod
    def idle() -> dict[str, Any]:
        return {"portal": {"portal_url": URL, "device_id": "CT-1", "state": "connected", "error": ""},
                "access": {"level": "no-access"}, "sessions": [], "tasks": [], "upgrade": None, "killing": False,
                "examination_block": {"held": False}}

    def status(self, layout: Layout) -> dict[str, Any] | None:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def ask(self, layout: Layout, *args: str, program: Path | None = None) -> tuple[int, str]:
        self.asked.append(args)
        if args[:2] == ("telemetry", "status"):
            last = self.last_push.pop(0) if len(self.last_push) > 1 else self.last_push[0]
            return 0, json.dumps({"records": 0, "last_push": last, "last_error": None})
        if args[:2] == ("audit", "verify"):
            return self.verify[0], json.dumps(self.verify[1])
        if args[0] == "kill":
            return self.receipt[0], json.dumps(self.receipt[1])
        raise AssertionError(f"unexpected command {args}")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Installed:
    agent = Installed()
    monkeypatch.setattr(acceptance.doctor, "examine", lambda layout: [])
    monkeypatch.setattr(service, "status", agent.status)
    monkeypatch.setattr(service, "ask", agent.ask)
    return agent


def check(tmp_path: Path, wait_s: float = 60, clock: Clock | None = None, url: str = URL) -> dict[str, tuple[str, str]]:
    clock = clock or Clock()
    found = acceptance.examine(Layout(tmp_path), url, wait_s, now=clock.now, sleep=clock.sleep)
    return {f.check: ("SKIP" if f.skipped else "OK" if f.ok else "FIX", f.detail) for f in found}


def test_an_idle_enrolled_scanner_passes_and_the_kill_switch_is_pressed_once(installed: Installed,
                                                                             tmp_path: Path) -> None:
    said = check(tmp_path)
    assert {name: verdict for name, (verdict, _) in said.items()} == {
        "enrolled with this portal": "OK", "telemetry reaches the portal": "OK",
        "audit log agrees with the portal": "OK", "kill switch": "OK"}
    assert [a for a in installed.asked if a[0] == "kill"] == [("kill", "--json", "--reason", acceptance.KILL_REASON)]
    assert ("audit", "verify", "--against-portal", "--json") in installed.asked


def test_another_portal_or_no_connection_is_a_fix_saying_what_to_do(installed: Installed, tmp_path: Path) -> None:
    verdict, detail = check(tmp_path, url="https://other.example")["enrolled with this portal"]
    assert verdict == "FIX"
    assert detail.startswith(f"enrolled with {URL}, not https://other.example: ")
    installed.statuses = [{**Installed.idle(), "portal": {"portal_url": URL, "state": "unreachable",
                                                          "error": "connection refused"}}]
    verdict, detail = check(tmp_path)["enrolled with this portal"]
    assert (verdict, detail) == ("FIX", 'enrolled, but unreachable: connection refused; see the "portal reachable" '
                                        "line above.")


def test_telemetry_waits_for_the_next_push_then_says_fix(installed: Installed, tmp_path: Path) -> None:
    clock = Clock()
    installed.last_push = [None, None, clock.t + 12]  # the first push 12 s into the check
    assert check(tmp_path, clock=clock)["telemetry reaches the portal"][0] == "OK"
    assert 10 <= clock.t - 1000 <= 15

    clock = Clock()
    installed.last_push = [clock.t - 301]  # the last push before the push interval (300 s by default): stale
    verdict, detail = check(tmp_path, wait_s=30, clock=clock)["telemetry reaches the portal"]
    assert verdict == "FIX"
    assert detail.startswith("no push in the last 330 s (last error: none said)")
    assert clock.t - 1000 == 30  # waited --wait, by the injected clock


def test_a_log_the_portal_disagrees_with_is_a_fix(installed: Installed, tmp_path: Path) -> None:
    installed.verify = (1, {"ok": False, "summary": "the portal holds a checkpoint for record 57; the log ends at 40"})
    verdict, detail = check(tmp_path)["audit log agrees with the portal"]
    assert verdict == "FIX"
    assert "the log ends at 40" in detail
    assert "tell the vendor's security contact" in detail


@pytest.mark.parametrize(("change", "why"), [
    ({"sessions": [{"id": "12345678"}]}, "1 session(s) open"),
    ({"tasks": [{"id": "t1"}]}, "1 task(s) running"),
    ({"access": {"level": "limited"}}, "access is limited"),
    ({"upgrade": {"version": "0.2.0"}}, "a software upgrade is on its way"),
])
def test_the_kill_switch_is_not_pressed_when_it_would_change_something(installed: Installed, tmp_path: Path,
                                                                         change: dict[str, Any], why: str) -> None:
    installed.statuses = [Installed.idle(), {**Installed.idle(), **change}]  # changed while the check ran
    verdict, detail = check(tmp_path)["kill switch"]
    assert (verdict, detail.split(", which")[0]) == ("SKIP", f"not tried: {why}")
    assert not [a for a in installed.asked if a[0] == "kill"]


def test_a_handed_over_upgrade_keeps_the_kill_switch_unpressed(installed: Installed, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.update_dir.mkdir(parents=True)
    (layout.update_dir / UPGRADE_REQUEST).write_text("{}")
    assert check(tmp_path)["kill switch"][0] == "SKIP"
    assert not [a for a in installed.asked if a[0] == "kill"]


def test_a_kill_switch_with_problems_or_a_held_block_is_a_fix(installed: Installed, tmp_path: Path) -> None:
    installed.receipt = (0, {"problems": ["could not release the examination block: tool timed out"]})
    verdict, detail = check(tmp_path)["kill switch"]
    assert (verdict, detail.split(":")[0]) == ("FIX", "could not release the examination block")
    installed.receipt = (0, {"problems": [], "elapsed_ms": 5})
    installed.statuses = [Installed.idle(), Installed.idle(), {**Installed.idle(), "examination_block": {"held": True}}]
    assert check(tmp_path)["kill switch"] == ("FIX", "the examination block is still held: look at `journalctl -u "
                                                     "servicegate` and tell the vendor.")


def test_without_an_answering_agent_it_says_to_fix_doctor_s_lines_first(installed: Installed, tmp_path: Path) -> None:
    installed.statuses = [None]  # type: ignore[list-item]
    assert check(tmp_path) == {"acceptance": ("FIX", "no agent answers: fix the lines above, then run this again.")}
