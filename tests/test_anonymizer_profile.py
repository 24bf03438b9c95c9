"""The profile: Table E.1-1 as package data, the options, the precedence of actions, the safe-private list."""

from __future__ import annotations

import csv
import fnmatch
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import pytest
from pydicom.sr.codedict import Collection

from anonymizer import profile
from anonymizer.errors import AnonymizerError, ProfileError, Refused
from anonymizer.profile import (
    BASIC_PROFILE_CODE,
    Option,
    Rule,
    RuleTable,
    SafePrivate,
    action_for,
    parse_safe_private,
    safe_private_list,
    validate_options,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table() -> RuleTable:
    return RuleTable.load()


def rule(table: RuleTable, tag: int) -> Rule:
    found = table.rule_for(tag)
    assert found is not None, f"no rule for {tag:08X}"
    return found


# --- the package data -------------------------------------------------------------------------------


def test_the_data_files_are_package_resources_and_ship_in_the_wheel() -> None:
    data = resources.files("anonymizer").joinpath("data")
    names = {"table_e1_1.csv", "safe_private_E.3.10-1_2023b.csv", "SOURCES.md"}
    assert all(data.joinpath(name).is_file() for name in names)
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["anonymizer"]
    assert all(any(fnmatch.fnmatch(f"data/{name}", g) for g in globs) for name in names)


def test_the_table_loads_from_a_copy_of_the_package_outside_the_repository(tmp_path: Path) -> None:
    """Only the modules and the files the package-data globs ship; no site-packages, no source tree."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["anonymizer"]
    package = tmp_path / "anonymizer"
    (package / "data").mkdir(parents=True)
    for module in ("__init__.py", "errors.py", "profile.py"):
        shutil.copy(ROOT / "anonymizer" / module, package / module)
    for path in (ROOT / "anonymizer" / "data").iterdir():
        if any(fnmatch.fnmatch(f"data/{path.name}", g) for g in globs):
            shutil.copy(path, package / "data" / path.name)
    code = ("import anonymizer, anonymizer.profile as p; t = p.RuleTable.load(); "
            "print(anonymizer.__file__, len(t.rules), len(p.safe_private_list()))")
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60, check=True)
    file, rules, safe = done.stdout.split()
    assert Path(file).is_relative_to(tmp_path)
    assert (int(rules), int(safe)) == (656, 479)


def test_damaged_package_data_is_a_profile_error_naming_the_line(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    original = (ROOT / "anonymizer" / "data" / "table_e1_1.csv").read_text()
    (tmp_path / "data").mkdir()
    lines = original.splitlines(keepends=True)
    lines[3] = lines[3].replace(",U,,K,", ",Q,,K,", 1)  # an unknown basic action code on line 4
    (tmp_path / "data" / "table_e1_1.csv").write_text("".join(lines))
    monkeypatch.setattr(resources, "files", lambda package: tmp_path)  # what profile.py reads through
    profile._load_table.cache_clear()
    try:
        with pytest.raises(ProfileError, match=r"line 4 \(\(0002,0003\)\).*'Q'.*Reinstall"):
            RuleTable.load()
        (tmp_path / "data" / "table_e1_1.csv").write_text(original.replace(",clean_graphics,", ",graphics,", 1))
        with pytest.raises(ProfileError, match=r"lacks the columns \['clean_graphics'\]"):
            RuleTable.load()
        (tmp_path / "data" / "table_e1_1.csv").write_text(original.replace('"(0010,0010)",tag,', '"(0010,0010)",', 1))
        with pytest.raises(ProfileError, match="wrong field count"):
            RuleTable.load()
    finally:
        profile._load_table.cache_clear()


def test_load_is_cached(table: RuleTable) -> None:
    assert RuleTable.load() is table


# --- Table E.1-1 ----------------------------------------------------------------------------------


def test_row_counts(table: RuleTable) -> None:
    assert len(table.rules) == 656
    assert sum(r.from_2026c for r in table.rules) == 35
    assert Counter(r.kind for r in table.rules) == {"tag": 652, "group_mask": 3, "private_odd_group": 1}
    assert all((r.tag is None) == (r.kind != "tag") for r in table.rules)


def test_the_2026c_rows_carry_only_the_basic_column(table: RuleTable) -> None:
    added = [r for r in table.rules if r.from_2026c]
    assert all(r.kind == "tag" and r.basic and not r.overrides for r in added)
    assert "Gender Identity Sequence" in {r.name for r in added}


@pytest.mark.parametrize(
    ("tag", "keyword", "basic", "overrides"),
    [
        (0x00100010, "PatientName", "Z", {}),
        (0x00100020, "PatientID", "Z/D", {}),  # Z in 2023b, Z/D since 2024b
        (0x00080018, "SOPInstanceUID", "U", {Option.RETAIN_UIDS: "K"}),
        (0x00100030, "PatientBirthDate", "Z", {}),
        (0x00101010, "PatientAge", "X", {Option.RETAIN_PATIENT_CHARACTERISTICS: "K"}),
        (0x00181000, "DeviceSerialNumber", "X/Z/D", {Option.RETAIN_DEVICE_IDENTITY: "K"}),
        (0x00080080, "InstitutionName", "X/Z/D", {Option.RETAIN_INSTITUTION_IDENTITY: "K"}),
        (0x00081030, "StudyDescription", "X", {Option.CLEAN_DESCRIPTORS: "C"}),
        (0x00081110, "ReferencedStudySequence", "X/Z", {Option.RETAIN_UIDS: "K"}),
        (0x00080020, "StudyDate", "Z", {Option.RETAIN_LONG_FULL_DATES: "K", Option.RETAIN_LONG_MODIFIED_DATES: "C"}),
    ],
)
def test_known_rows(table: RuleTable, tag: int, keyword: str, basic: str, overrides: dict[Option, str]) -> None:
    found = rule(table, tag)
    assert (found.keyword, found.basic, dict(found.overrides)) == (keyword, basic, overrides)
    assert (found.kind, found.from_2026c, found.retired) == ("tag", False, False)


def test_rules_are_immutable_and_hashable(table: RuleTable) -> None:
    found = rule(table, 0x00080018)
    assert isinstance(found.overrides, MappingProxyType)
    assert len({found, found}) == 1


@pytest.mark.parametrize(
    ("tag", "pattern"),
    [
        (0x60023000, "(60xx,3000)"),
        (0x60003000, "(60xx,3000)"),
        (0x601E3000, "(60xx,3000)"),
        (0x60044000, "(60xx,4000)"),
        (0x50100012, "(50xx,xxxx)"),
        (0x501E3000, "(50xx,xxxx)"),
    ],
)
def test_repeating_groups_match_their_mask(table: RuleTable, tag: int, pattern: str) -> None:
    assert rule(table, tag).pattern == pattern


@pytest.mark.parametrize(
    "tag",
    [
        0x60013000,  # odd group: a private group, not an overlay
        0x50110012,
        0x60203000,  # beyond the repeating range 6000-601E
        0x60000010,  # Overlay Rows: not in Table E.1-1
        0x00091010,  # private attributes and their creators are handled elsewhere
        0x00090010,
        0x7FE11010,
        0x00280010,  # Rows: not in the table
    ],
)
def test_private_and_unlisted_tags_have_no_rule(table: RuleTable, tag: int) -> None:
    assert table.rule_for(tag) is None


def test_a_duplicate_tag_is_a_profile_error(table: RuleTable) -> None:
    with pytest.raises(ProfileError, match=r"\(0010,0010\) twice"):
        RuleTable([rule(table, 0x00100010), rule(table, 0x00100010)])


# --- options and precedence ------------------------------------------------------------------------


def test_action_for_applies_the_options_of_the_row(table: RuleTable) -> None:
    sop = rule(table, 0x00080018)
    assert action_for(sop, frozenset()) == "U"
    assert action_for(sop, frozenset({Option.RETAIN_UIDS})) == "K"
    assert action_for(sop, frozenset({Option.RETAIN_DEVICE_IDENTITY, Option.CLEAN_PIXEL_DATA})) == "U"
    assert action_for(rule(table, 0x00100010), frozenset(Option) - {Option.RETAIN_LONG_FULL_DATES}) == "Z"


def test_two_options_that_disagree_give_the_more_protective_action(table: RuleTable) -> None:
    calibration = rule(table, 0x0014407E)  # Calibration Date: a real row where two options disagree
    assert calibration.overrides == {Option.RETAIN_DEVICE_IDENTITY: "K", Option.RETAIN_LONG_FULL_DATES: "K",
                                     Option.RETAIN_LONG_MODIFIED_DATES: "C"}
    assert action_for(calibration, frozenset()) == "X"
    assert action_for(calibration, frozenset({Option.RETAIN_DEVICE_IDENTITY})) == "K"
    assert action_for(calibration, frozenset({Option.RETAIN_LONG_MODIFIED_DATES})) == "C"
    both = frozenset({Option.RETAIN_DEVICE_IDENTITY, Option.RETAIN_LONG_MODIFIED_DATES})
    assert action_for(calibration, both) == "C"


def test_the_most_protective_override_wins_for_any_codes() -> None:
    made_up = Rule(tag=0x00990001, pattern="(0099,0001)", kind="tag", keyword="", name="Made up", vr="LO",
                   retired=False, basic="D", from_2026c=False,
                   overrides=MappingProxyType({Option.CLEAN_DESCRIPTORS: "K", Option.CLEAN_GRAPHICS: "X",
                                               Option.RETAIN_UIDS: "C"}))
    assert action_for(made_up, frozenset({Option.CLEAN_DESCRIPTORS, Option.RETAIN_UIDS})) == "C"
    assert action_for(made_up, frozenset({Option.CLEAN_DESCRIPTORS, Option.CLEAN_GRAPHICS})) == "X"


def test_no_option_overrides_a_row_with_a_code_outside_the_ranking(table: RuleTable) -> None:
    codes = {code for r in table.rules for code in r.overrides.values()}
    assert codes == {"K", "C"}
    assert codes <= set(profile.PROTECTION_ORDER) == set(profile.ACTION_CODES)


def test_action_for_refuses_the_exclusive_date_options(table: RuleTable) -> None:
    with pytest.raises(ProfileError, match="mutually exclusive"):
        action_for(rule(table, 0x00080020),
                   frozenset({Option.RETAIN_LONG_FULL_DATES, Option.RETAIN_LONG_MODIFIED_DATES}))


def test_validate_options_parses_cli_and_configuration_spellings() -> None:
    assert validate_options([]) == frozenset()
    assert validate_options(["retain-uids", " Retain_Device_Identity ", "retain-uids"]) == {
        Option.RETAIN_UIDS, Option.RETAIN_DEVICE_IDENTITY}
    every_compatible = frozenset(Option) - {Option.RETAIN_LONG_FULL_DATES}
    assert validate_options(every_compatible) == every_compatible


def test_validate_options_names_the_allowed_ones() -> None:
    with pytest.raises(ProfileError, match=r"'retain-uid' \(did you mean 'retain-uids'\?\)") as caught:
        validate_options(["retain-uid"])
    assert all(o.value in str(caught.value) for o in Option)
    with pytest.raises(ProfileError, match="unknown de-identification option 'everything'; the options are "):
        validate_options(["everything"])


def test_validate_options_refuses_full_and_modified_dates_together() -> None:
    with pytest.raises(ProfileError, match="cannot be used together.*Choose one"):
        validate_options(["retain-long-full-dates", "retain-long-modified-dates"])


def test_option_columns() -> None:
    header = (ROOT / "anonymizer" / "data" / "table_e1_1.csv").read_text().splitlines()[0].split(",")
    assert Option.CLEAN_PIXEL_DATA.column is None
    assert all(o.column in header for o in Option if o is not Option.CLEAN_PIXEL_DATA)
    assert Option.RETAIN_LONG_MODIFIED_DATES.column == "retain_long_modified_dates"


def test_option_codes_are_those_of_cid_7050() -> None:
    cid = Collection("CID7050")
    defined = {getattr(cid, k).value: getattr(cid, k).meaning for k in cid.dir()}
    assert {o.code: o.meaning for o in Option} == {k: v for k, v in defined.items() if k not in ("113100", "113102")}
    assert defined[BASIC_PROFILE_CODE[0]] == BASIC_PROFILE_CODE[1]
    assert (Option.CLEAN_PIXEL_DATA.code, Option.RETAIN_INSTITUTION_IDENTITY.code) == ("113101", "113112")
    assert Option.RETAIN_SAFE_PRIVATE.meaning == "Retain Safe Private Option"


# --- the safe-private list --------------------------------------------------------------------------


def test_safe_private_list_holds_the_standard_list() -> None:
    keys = safe_private_list()
    assert len(keys) == 479
    assert (0x7053, "Philips PET Private Group", 0x00) in keys
    assert (0x7053, "Philips PET Private Group", 0x09) in keys
    assert (0x00E1, "ELSCINT1", 0x21) in keys
    assert (0x2001, "Philips Imaging DD 001", 0x0A) in keys  # written (2001,xx0a) in the standard
    assert all(group % 2 == 1 and creator == creator.strip() for group, creator, _ in keys)


def test_safe_private_list_is_extended_by_configuration() -> None:
    extra = parse_safe_private([{"Data Element": "(0029,xx10)", "Private Creator": " ACME CT 1 ", "VR": "DS"}])
    assert extra == [SafePrivate(group=0x0029, creator="ACME CT 1", element=0x10, vr="DS", meaning="")]
    keys = safe_private_list(extra)
    assert (0x0029, "ACME CT 1", 0x10) in keys
    assert len(keys) == 480
    assert (0x0029, "ACME CT 1", 0x10) not in safe_private_list()


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"Data Element": "(0029,1010)", "Private Creator": "ACME"}, r"must look like \(7053,xx00\)"),
        ({"Data Element": "(0010,xx10)", "Private Creator": "ACME"}, "group must be odd"),
        ({"Data Element": "(0007,xx10)", "Private Creator": "ACME"}, "group must be odd and above 0008"),
        ({"Data Element": "(0029,xx10)", "Private Creator": "  "}, "'Private Creator' is blank"),
        ({"Data Element": "(0029,xx10)", "Private Creator": "A" * 65}, "longer than 64"),
        ({"Private Creator": "ACME"}, "must look like"),
    ],
)
def test_bad_safe_private_rows_are_named(row: dict[str, str], problem: str) -> None:
    good = {"Data Element": "(0029,xx11)", "Private Creator": "ACME"}
    with pytest.raises(ProfileError, match=rf"safe-private row 2 .*{problem}"):
        parse_safe_private([good, row])


def test_the_package_list_parses_like_the_csv() -> None:
    with (ROOT / "anonymizer" / "data" / "safe_private_E.3.10-1_2023b.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(parse_safe_private(rows)) == profile.standard_safe_private()


# --- errors -----------------------------------------------------------------------------------------


def test_error_tree_and_refused_reason() -> None:
    refused = Refused("Burned In Annotation is YES")
    assert isinstance(refused, AnonymizerError)
    assert (refused.reason, str(refused)) == ("Burned In Annotation is YES", "Burned In Annotation is YES")
    assert issubclass(ProfileError, AnonymizerError)
