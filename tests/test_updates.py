"""The update flow's own rules (agent.updates), in-process: what an update's signed metadata must say, which device it
applies to, versions only going up, the site's approval window. The TUF checks themselves, against a real portal,
are tests/test_updates_tuf.py."""

from __future__ import annotations

from datetime import datetime

import pytest
from tuf.api._payload import TargetFile

from agent.updates import UpdateInfo, UpdateRefused, check_applies, in_window

CUSTOM = {"kind": "virus-patterns", "version": "2026.12.5", "models": ["CT-DEMO", "CT-OTHER"],
          "software_versions": ["0.1.0"], "restart": False, "downtime": False, "notes": "weekly patterns",
          "publisher": "Vendor Service"}


def target(**custom: object) -> TargetFile:
    return TargetFile(length=10, hashes={"sha256": "ab" * 32}, path="virus-patterns/p.dat",
                      unrecognized_fields={"custom": {**CUSTOM, **custom}})


def info(**custom: object) -> UpdateInfo:
    return UpdateInfo.of("virus-patterns/p.dat", target(**custom), ["k1"])


def test_the_signed_custom_metadata_becomes_the_update_info() -> None:
    got = info()
    assert (got.kind, got.version, got.models, got.software_versions) == (
        "virus-patterns", "2026.12.5", ("CT-DEMO", "CT-OTHER"), ("0.1.0",))
    assert (got.length, got.sha256, got.publisher, got.signed_by) == (10, "ab" * 32, "Vendor Service", ("k1",))
    assert UpdateInfo.from_dict(got.to_dict()) == got


@pytest.mark.parametrize(("custom", "words"), [
    ({"kind": "firmware"}, "no known kind"),
    ({"version": "latest"}, "no version of the form 1.2.3"),
    ({"models": []}, "names no models"),
    ({"software_versions": "0.1.0"}, "not a list of versions"),
])
def test_metadata_without_what_the_device_needs_is_refused(custom: dict[str, object], words: str) -> None:
    with pytest.raises(UpdateRefused, match=words):
        info(**custom)


def test_an_update_applies_to_its_models_software_versions_and_only_upwards() -> None:
    check_applies(info(), "CT-DEMO", "0.1.0", {"virus-patterns": "2026.12.4"})  # the positive control
    check_applies(info(software_versions=[]), "CT-DEMO", "9.9.9", {})  # empty: any agent version
    with pytest.raises(UpdateRefused, match="is for CT-DEMO, CT-OTHER, not for this MR-1"):
        check_applies(info(), "MR-1", "0.1.0", {})
    with pytest.raises(UpdateRefused, match="applies to ServiceGate 0.1.0, not to the 0.2.0 installed here"):
        check_applies(info(), "CT-DEMO", "0.2.0", {})
    with pytest.raises(UpdateRefused, match="not newer than the 2026.12.5 installed here"):
        check_applies(info(), "CT-DEMO", "0.1.0", {"virus-patterns": "2026.12.5"})
    with pytest.raises(UpdateRefused, match="not newer than the 2027.1 installed here"):  # 2027.1 > 2026.12.5
        check_applies(info(), "CT-DEMO", "0.1.0", {"virus-patterns": "2027.1"})
    with pytest.raises(UpdateRefused, match=r"model is not configured \(\[updates\] model"):
        check_applies(info(), "", "0.1.0", {})


@pytest.mark.parametrize(("window", "hour", "inside"), [
    ("22:00-06:00", 23, True), ("22:00-06:00", 3, True), ("22:00-06:00", 6, False), ("22:00-06:00", 12, False),
    ("08:00-17:00", 8, True), ("08:00-17:00", 17, False), ("", 3, False),
])
def test_the_approval_window_wraps_past_midnight(window: str, hour: int, inside: bool) -> None:
    local = datetime(2026, 12, 5, hour, 0).astimezone()
    assert in_window(window, local) is inside
