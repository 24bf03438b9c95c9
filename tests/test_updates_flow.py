"""Updates end to end on loopback, with real processes: the vendor publishes at the portal and offers the update
through the inbox; the running agent verifies and stages it; `servicegate update approve` installs it by the
catalog's task; the portal receives the report. Reject and postpone, and the site's approval window, too."""

from __future__ import annotations

import getpass
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from installer.layout import Layout
from portal.store import Store
from tests.agent_process import AgentProcess
from tests.bundle_fixtures import CURRENT_VERSION, UPGRADE_VERSION
from tests.portal_process import PortalProcess
from tests.shared_fixtures import UPDATE_DEVICE
from tests.test_connection import FAST_TELEMETRY, audit_events, device, enroll, wait_for
from tests.test_installer import SITE, apply_request, install

DEVICE_ID = UPDATE_DEVICE


@pytest.fixture
def agent(update_agent: AgentProcess) -> AgentProcess:
    return update_agent


def publish(portal: PortalProcess, tmp_path: Path, version: str, *more: str) -> str:
    """Virus patterns published in the portal's TUF repository and offered to the device; their target name."""
    file = tmp_path / f"patterns-{version}.dat"
    file.write_bytes(f"signatures {version}\n".encode() * 100)
    done = portal.run("publish", str(file), "--kind", "virus-patterns", "--version", version, "--models", "CT-DEMO",
                      "--notes", f"weekly patterns {version}", *more, "--offer-to", DEVICE_ID)
    assert done.returncode == 0, done.stdout + done.stderr
    return f"virus-patterns/{file.name}"


def update(agent: AgentProcess, name: str, state: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((u for u in agent.cli_json("update", "list") if u["name"] == name and u["state"] == state), None)

    result: dict[str, Any] = wait_for(f"{name} {state}", found)
    return result


def reports(portal: PortalProcess) -> list[tuple[str, str]]:
    return [(r["target"], r["outcome"]) for r in portal.show(DEVICE_ID)["update_reports"]]


def test_published_offered_approved_installed_and_reported(portal: PortalProcess, agent: AgentProcess,
                                                           tmp_path: Path) -> None:
    name = publish(portal, tmp_path, "2026.12.5")
    offered = update(agent, name, "offered")
    shown = agent.cli("update", "show", offered["id"])
    assert shown.returncode == 0
    assert "weekly patterns 2026.12.5" in shown.stdout
    assert "nothing (no restart, no downtime)" in shown.stdout

    approved = agent.cli("update", "approve", offered["id"])
    assert approved.returncode == 0, approved.stderr
    installed = update(agent, name, "installed")
    assert installed["decided_by"] == getpass.getuser()
    current = tmp_path / "patterns" / "current" / "patterns-2026.12.5.dat"
    assert current.read_bytes() == b"signatures 2026.12.5\n" * 100
    assert not Path(offered["file"]).exists()  # the staged copy is gone
    wait_for("the report at the portal", lambda: (name, "installed") in reports(portal))

    events = [(r["event"], r["actor"]) for r in audit_events(agent) if r["event"].startswith(("update_", "task_"))]
    assert events == [("update_offer_received", "portal"), ("update_offered", "servicegate"),
                      ("update_approved", getpass.getuser()), ("task_allowed", getpass.getuser()),
                      ("task_ended", "servicegate"), ("update_installed", "servicegate")]

    # The same version again, or an older one, even validly signed and offered: refused, never installed.
    again = publish(portal, tmp_path, "2026.12.4")
    wait_for("the refusal at the portal", lambda: (again, "refused") in reports(portal))
    assert [u["name"] for u in agent.cli_json("update", "list")] == [name]


def test_rejected_and_postponed_updates_are_not_installed(portal: PortalProcess, agent: AgentProcess,
                                                          tmp_path: Path) -> None:
    first = update(agent, publish(portal, tmp_path, "2026.12.6"), "offered")
    rejected = agent.cli("update", "reject", first["id"], "--reason", "not during the clinic's busy week")
    assert rejected.returncode == 0, rejected.stderr
    assert not Path(first["file"]).exists()
    second = update(agent, publish(portal, tmp_path, "2026.12.7"), "offered")
    later = (datetime.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    assert agent.cli("update", "postpone", second["id"], "--until", later).returncode == 0
    postponed = update(agent, second["name"], "postponed")
    assert postponed["until"] is not None
    again = agent.cli("update", "approve", first["id"])  # a rejected update stays rejected
    assert again.returncode == 1
    assert "is rejected: only a waiting update can be approved" in again.stderr
    assert not (tmp_path / "patterns" / "current").exists()
    wait_for("both reports", lambda: {(first["name"], "rejected"), (second["name"], "postponed")} <= set(
        reports(portal)))
    [record] = [r for r in audit_events(agent) if r["event"] == "update_rejected"]
    assert record["details"]["reason"] == "not during the clinic's busy week"


def test_a_software_update_goes_through_the_real_upgrade_service_and_the_kill_switch_stops_it_before_the_switch(
        portal: PortalProcess, agent: AgentProcess, bundle: Path, bundle_factory: object, tmp_path: Path) -> None:
    """The agent's side and the root service's together: a staging installation of this version whose state folder
    is the running agent's, so the request the agent's task writes is what `servicegate-install apply-request` (the
    ExecStart of servicegate-upgrade.service) reads, and the result it leaves is what the agent takes. systemd does
    not run here (no path unit, no restart): the test starts the service's command where the path unit would.
    First the kill switch is pressed after the hand-over: the service stops before anything is switched. Offered
    again, the update installs."""
    assert callable(bundle_factory)
    bundle_factory(UPGRADE_VERSION)
    tarball: Path = bundle_factory.tarball(UPGRADE_VERSION)  # type: ignore[attr-defined]
    root = tmp_path / "root"
    layout = Layout(root)
    (tmp_path / "site.toml").write_text(SITE)
    installed = install(bundle, tmp_path / "site.toml", root)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shutil.rmtree(layout.state_dir)
    layout.state_dir.symlink_to(agent.state)
    shutil.copyfile(agent.state / "portal" / "tuf-root.json", layout.etc / "tuf-root.json")  # as the installer does
    done = portal.run("publish", str(tarball), "--kind", "software", "--version", UPGRADE_VERSION, "--models",
                      "CT-DEMO", "--software-versions", CURRENT_VERSION, "--restart", "--offer-to", DEVICE_ID)
    assert done.returncode == 0, done.stdout + done.stderr
    name = f"software/{tarball.name}"
    updates = agent.state / "updates"

    offered = update(agent, name, "offered")
    assert (offered["restart"], offered["length"]) == (True, tarball.stat().st_size)
    assert agent.cli("update", "approve", offered["id"]).returncode == 0
    update(agent, name, "upgrading")
    request = json.loads((updates / "upgrade-request.json").read_text())
    assert (request["version"], request["target"]) == (UPGRADE_VERSION, name)
    killed = agent.cli("kill", "--reason", "the patient needs the scanner")
    assert killed.returncode == 0, killed.stderr
    assert json.loads((updates / "upgrade-cancel.json").read_text())["version"] == UPGRADE_VERSION
    stopped = apply_request(root)
    assert stopped.returncode == 1
    assert os.readlink(layout.current) == f"releases/{CURRENT_VERSION}"  # nothing switched
    failed = update(agent, name, "failed")
    assert "stopped by the kill switch at the console" in failed["why"]
    assert not (updates / "upgrade-cancel.json").exists()
    [kill] = [r for r in audit_events(agent) if r["event"] == "kill"]
    assert kill["details"]["cancelled_updates"] == [offered["id"]]

    portal.post(DEVICE_ID, "update_offer", {"target": name})  # offered again: this time it goes through
    again = update(agent, name, "offered")
    assert agent.cli("update", "approve", again["id"]).returncode == 0
    update(agent, name, "upgrading")
    applied = apply_request(root)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert os.readlink(layout.current) == f"releases/{UPGRADE_VERSION}"
    update(agent, name, "installed")
    assert not (updates / "upgrade-result.json").exists()
    wait_for("both reports at the portal", lambda: {(name, "failed"), (name, "installed")} <= set(reports(portal)))
    events = [r["event"] for r in audit_events(agent) if r["event"].startswith("update_")]
    assert events[-3:] == ["update_approved", "update_handed_over", "update_installed"]
    assert "update_cancel_requested" in events


VENDOR_RULE = "vendor-memory-watch"


def publish_rules(portal: PortalProcess, tmp_path: Path, version: str,
                  metric: str = "system.memory.utilization") -> str:
    """The vendor's threshold rules published as a configuration update and offered to the device; its target name.
    The rule holds on any machine (memory in use above 0 %), so it fires at the next sample once it is in use."""
    file = tmp_path / f"thresholds-{version}.toml"
    file.write_text(f'[[rule]]\nname = "{VENDOR_RULE}"\nmetric = "{metric}"\ncomparison = ">"\nlimit = 0.0\n'
                    'severity = "info"\n')
    done = portal.run("publish", str(file), "--kind", "configuration", "--version", version, "--models", "CT-DEMO",
                      "--notes", "threshold rules for CT-DEMO", "--offer-to", DEVICE_ID)
    assert done.returncode == 0, done.stdout + done.stderr
    return f"configuration/{file.name}"


def vendor_alerts(portal: PortalProcess) -> list[dict[str, Any]]:
    return [item for record in Store(portal.data_dir / "portal.sqlite").records(DEVICE_ID, "alert")
            for item in record["items"] if item.get("servicegate.rule") == VENDOR_RULE]


def test_a_configuration_update_puts_the_vendors_threshold_rules_in_use_at_once(
        portal: PortalProcess, agent: AgentProcess, tmp_path: Path) -> None:
    wait_for("a first push of metrics", lambda: Store(portal.data_dir / "portal.sqlite").records(DEVICE_ID, "metric"))
    assert vendor_alerts(portal) == []  # the built-in rules: nothing of the vendor's fires
    name = publish_rules(portal, tmp_path, "3")
    offered = update(agent, name, "offered")
    assert agent.cli("update", "approve", offered["id"]).returncode == 0
    update(agent, name, "installed")
    installed = agent.state / "updates" / "configuration" / "current" / "thresholds.toml"
    assert installed.read_bytes() == (tmp_path / "thresholds-3.toml").read_bytes()
    firing = wait_for("the vendor's rule firing at the portal", lambda: vendor_alerts(portal))
    assert firing[0]["servicegate.state"] == "firing"  # taken without a restart of the agent
    wait_for("the report at the portal", lambda: (name, "installed") in reports(portal))

    # Rules the agent's parser does not take (a misspelt metric): the installation fails, the rules in use stay.
    bad = publish_rules(portal, tmp_path, "4", metric="system.memory.utilisation")
    assert agent.cli("update", "approve", update(agent, bad, "offered")["id"]).returncode == 0
    failed = update(agent, bad, "failed")
    assert "system.memory.utilisation" in failed["why"]
    assert installed.resolve().parent.name == "3"
    wait_for("the failure at the portal", lambda: (bad, "failed") in reports(portal))


def test_a_site_that_keeps_its_own_threshold_rules_refuses_the_vendors(portal: PortalProcess, tmp_path: Path) -> None:
    """A configuration update would change nothing where site IT set `[telemetry] thresholds`: refused when
    offered, with the reason at the portal, and nothing staged."""
    own = tmp_path / "site-thresholds.toml"
    own.write_text('[[rule]]\nname = "site-disk"\nmetric = "system.filesystem.utilization"\ncomparison = ">"\n'
                   "limit = 0.99\n")
    process = device(tmp_path, "f" * 32, FAST_TELEMETRY + f'thresholds = "{own}"\n[updates]\nmodel = "CT-DEMO"\n')
    assert enroll(process, portal, DEVICE_ID).returncode == 0
    process.start()
    try:
        name = publish_rules(portal, tmp_path, "5")
        wait_for("the refusal at the portal", lambda: (name, "refused") in reports(portal))
        [refusal] = [r for r in audit_events(process) if r["event"] == "update_refused"]
        assert "this site keeps its own threshold rules" in refusal["details"]["why"]
        assert process.cli_json("update", "list") == []
        staging = process.state / "updates" / "staging"
        assert not staging.exists() or not any(staging.iterdir())
    finally:
        process.stop()


def test_the_site_policy_approves_virus_patterns_in_its_window_and_is_recorded_as_the_approver(
        portal: PortalProcess, tmp_path: Path) -> None:
    now = datetime.now()
    window = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"  # now is inside it
    process = device(tmp_path, "f" * 32, FAST_TELEMETRY + f'[updates]\nmodel = "CT-DEMO"\n'
                                                          f'virus_pattern_dir = "{tmp_path / "patterns"}"\n'
                                                          f'auto_approve_virus_patterns = "{window}"\n')
    assert enroll(process, portal, DEVICE_ID).returncode == 0
    process.start()
    try:
        name = publish(portal, tmp_path, "2026.12.8")
        installed = update(process, name, "installed")  # nobody at the console was asked
        assert installed["decided_by"] == "site-policy"
        [approval] = [r for r in audit_events(process) if r["event"] == "update_approved"]
        assert (approval["actor"], approval["details"]["by"]) == ("site-policy", "site policy")
        assert (tmp_path / "patterns" / "current" / "patterns-2026.12.8.dat").is_file()
    finally:
        process.stop()
