"""The Basic Application Level Confidentiality Profile and its options, driven by PS3.15 Table E.1-1.

The table ships as package data (`anonymizer/data/`, see SOURCES.md there) and is read through
importlib.resources, so an installed wheel finds it without the source tree. This module only says
*which* action code applies to an attribute under a set of options; carrying the action out is
`anonymizer.deidentify`'s job.

Precedence, where the Annex is silent: PS3.15 E.3 says that an option's requirement "overrides any
requirement for the underlying Profile", but not what happens when two selected options override
the same attribute differently. That happens for real: Calibration Date (0014,407E) is K under
Retain Device Identity and C under Retain Longitudinal Temporal Information with Modified Dates.
ServiceGate then applies the more protective code (C over K): the person who asked for modified
dates did not ask for the original date to leave, and keeping less is the safe error.

`anonymizer.docs` writes docs/deidentification.md from it.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from anonymizer.errors import ProfileError

TABLE_FILE = "table_e1_1.csv"
SAFE_PRIVATE_FILE = "safe_private_E.3.10-1_2023b.csv"
SAFE_PRIVATE_EDITION = "2023b"

TABLE_SOURCES = (
    "PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes) ships as package data "
    "with 656 rows. 621 rows are the DICOM 2024b edition with every option column, as normalised by "
    "innolitics/dicom-standard (standard/confidentiality_profile_attributes.json at commit 8670abdd, "
    '"Update standard to rev2024b"; unchanged through 2025-01-28), cross-checked against the official '
    "2023b DocBook part15.xml (all of its 608 rows are present; the one changed value is Patient ID "
    "(0010,0020), Z in 2023b and Z/D in 2024b) and against the 2024b Basic Profile column of KitwareMedical "
    "dicom-anonymizer. 35 rows were added by the DICOM 2026c edition and are taken from KitwareMedical "
    "dicom-anonymizer 2.1.0 (dicomfields_2026c.py), which carries only the Basic Profile column: their "
    'option cells are blank, which ServiceGate treats as "no override". Keywords and retired flags come from '
    "innolitics standard/attributes.json (2024b), value representations from pydicom's data dictionary "
    "(2024d); attributes newer than those dictionaries have neither. The Annex E text and the Retain Safe "
    "Private list (Table E.3.10-1) are from the DICOM 2023b edition."
)

BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")

# Action codes of Table E.1-1 (PS3.15 Table E.1-1a), in the order the documentation lists them.
ACTION_CODES: dict[str, str] = {
    "D": "replace with a non-zero-length value that may be a dummy value, consistent with the VR",
    "Z": "replace with a zero-length value, or a non-zero-length dummy value consistent with the VR",
    "X": "remove; a sequence is removed with all its items",
    "K": "keep: unchanged for a non-sequence attribute; a sequence is kept and its items are cleaned recursively",
    "C": "clean: replace with values of similar meaning known not to contain identifying information, "
    "consistent with the VR",
    "U": "replace the UID with a non-zero-length UID that is internally consistent within a set of instances",
    "Z/D": "Z unless D is required to maintain IOD conformance (Type 2 versus Type 1)",
    "X/Z": "X unless Z is required to maintain IOD conformance (Type 3 versus Type 2)",
    "X/D": "X unless D is required to maintain IOD conformance (Type 3 versus Type 1)",
    "X/Z/D": "X unless Z or D is required to maintain IOD conformance (Type 3 versus Type 2 versus Type 1)",
    "X/Z/U*": "X unless Z or replacement of contained instance UIDs (U) is required to maintain IOD conformance "
    "(Type 3 versus Type 2 versus Type 1 sequences containing UID references)",
}
# From least to most protective (how much of the original value can survive), for two options
# that override one row differently. Only K and C occur in today's option columns, but a future
# edition may put other codes there.
PROTECTION_ORDER = ("K", "C", "U", "D", "Z/D", "Z", "X/Z/U*", "X/D", "X/Z/D", "X/Z", "X")
_PROTECTION = {code: rank for rank, code in enumerate(PROTECTION_ORDER)}
_RULE_KINDS = ("tag", "group_mask", "private_odd_group")
_SOURCE_2024B = "innolitics-2024b"
_SOURCE_2026C = "kitware-dicomfields_2026c(basic-only)"


class Option(StrEnum):
    """An option of the Basic Profile (PS3.15 E.3), spelled as the CLI and the configuration spell it."""

    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_UIDS = "retain-uids"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    RETAIN_LONG_FULL_DATES = "retain-long-full-dates"
    RETAIN_LONG_MODIFIED_DATES = "retain-long-modified-dates"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"
    CLEAN_PIXEL_DATA = "clean-pixel-data"

    @property
    def column(self) -> str | None:
        """The option's column in Table E.1-1; None for Clean Pixel Data, which acts on pixels, not attributes."""
        return None if self is Option.CLEAN_PIXEL_DATA else self.value.replace("-", "_")

    @property
    def code(self) -> str:
        """The option's code value in DICOM CID 7050 (De-identification Method), scheme DCM."""
        return _CID_7050[self][0]

    @property
    def meaning(self) -> str:
        """The option's code meaning in DICOM CID 7050."""
        return _CID_7050[self][1]


# PS3.16 CID 7050. 113100 is the Basic Profile itself and 113102 (Clean Recognizable Visual
# Features) is an option ServiceGate does not offer.
_CID_7050: dict[Option, tuple[str, str]] = {
    Option.CLEAN_PIXEL_DATA: ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONG_FULL_DATES: ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    Option.RETAIN_LONG_MODIFIED_DATES: ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}
_EXCLUSIVE = frozenset({Option.RETAIN_LONG_FULL_DATES, Option.RETAIN_LONG_MODIFIED_DATES})


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    tag: int | None  # 0xGGGGEEEE for a "tag" row; None for the masks
    pattern: str  # as the table writes it: "(0010,0010)", "(60xx,3000)", "(gggg,eeee)"
    kind: str  # "tag" | "group_mask" | "private_odd_group"
    keyword: str  # blank for attributes newer than the keyword dictionary
    name: str
    vr: str  # blank where unknown (newer attributes, masks)
    retired: bool
    basic: str  # the Basic Profile's code
    overrides: Mapping[Option, str] = field(hash=False)  # only the options with a cell for this row
    from_2026c: bool  # one of the rows added in 2026c, which carry only the Basic Profile column


class RuleTable:
    """Table E.1-1 with fast lookup by tag."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._exact: dict[int, Rule] = {}
        # Repeating groups (PS3.5 7.6): (high byte of the group, element or None for any) -> rule.
        self._masks: dict[tuple[int, int | None], Rule] = {}
        for rule in self.rules:
            if rule.tag is not None:
                if rule.tag in self._exact:
                    raise ProfileError(f"Table E.1-1 lists {rule.pattern} twice; reinstall ServiceGate.")
                self._exact[rule.tag] = rule
            elif rule.kind == "group_mask":
                group, element = rule.pattern[1:-1].split(",")
                self._masks[(int(group[:2], 16), None if element == "xxxx" else int(element, 16))] = rule

    @classmethod
    def load(cls) -> RuleTable:
        """The table shipped with the package (read once). Raises ProfileError if the data is damaged."""
        return _load_table()

    def rule_for(self, tag: int) -> Rule | None:
        """The rule for a standard tag, or None if the table does not list it.

        Private (odd group) tags always give None: their handling (removal, or the safe-private list)
        does not depend on the tag's number alone.
        """
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2:
            return None
        rule = self._exact.get(tag)
        if rule is not None:
            return rule
        # Repeating groups (50xx, 60xx) are the even groups xx00 to xx1E.
        if group & 0xFF > 0x1E:
            return None
        return self._masks.get((group >> 8, element)) or self._masks.get((group >> 8, None))


def _parse_rule(row: Mapping[str, str], line: int) -> Rule:
    pattern, kind = row["tag"], row["tag_kind"]
    where = f"{TABLE_FILE} line {line} ({pattern})"
    shapes = {"tag": r"\([0-9A-F]{4},[0-9A-F]{4}\)", "group_mask": r"\([0-9A-F]{2}xx,(xxxx|[0-9A-F]{4})\)",
              "private_odd_group": r"\(gggg,eeee\)"}
    if kind not in shapes or not re.fullmatch(shapes[kind], pattern):
        raise ProfileError(f"{where}: the tag does not fit the row kind {kind!r} (allowed: {', '.join(_RULE_KINDS)}).")
    codes = {"basic": row["basic_profile"]} | {o.value: row[o.column] for o in Option if o.column}
    for what, code in codes.items():
        if (code and code not in ACTION_CODES) or (what == "basic" and not code):
            raise ProfileError(f"{where}: {what} action {code!r} is not an action code ({', '.join(ACTION_CODES)}).")
    if row["source"] not in (_SOURCE_2024B, _SOURCE_2026C) or row["retired"] not in ("True", "False", ""):
        raise ProfileError(f"{where}: unknown source {row['source']!r} or retired flag {row['retired']!r}.")
    overrides = {o: row[o.column] for o in Option if o.column and row[o.column]}
    from_2026c = row["source"] == _SOURCE_2026C
    if from_2026c and overrides:
        raise ProfileError(f"{where}: a 2026c row carries only the Basic Profile column, but has option cells.")
    return Rule(tag=int(pattern[1:5] + pattern[6:10], 16) if kind == "tag" else None, pattern=pattern, kind=kind,
                keyword=row["keyword"], name=row["name"], vr=row["vr"], retired=row["retired"] == "True",
                basic=row["basic_profile"], overrides=MappingProxyType(overrides), from_2026c=from_2026c)


def _read_data(name: str, columns: Iterable[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file in the package data; ProfileError if it is unreadable or malformed."""
    fix = "reinstall ServiceGate"
    try:
        text = resources.files("anonymizer").joinpath("data", name).read_text(encoding="utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise ProfileError(f"anonymizer/data/{name} lacks the columns {sorted(missing)}; {fix}.")
        rows = []
        for row in reader:
            # DictReader puts surplus fields under the key None and fills missing ones with None.
            if None in row or None in row.values():
                raise ProfileError(f"anonymizer/data/{name} line {reader.line_num} has a wrong field count; {fix}.")
            rows.append((reader.line_num, row))
        return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProfileError(f"cannot read anonymizer/data/{name} from the package ({exc}); {fix}.") from None


@functools.cache
def _load_table() -> RuleTable:
    needed = ["tag", "tag_kind", "keyword", "name", "vr", "retired", "basic_profile", "source"]
    rows = _read_data(TABLE_FILE, needed + [o.column for o in Option if o.column])
    try:
        rules = [_parse_rule(row, line) for line, row in rows]
    except ProfileError as exc:
        raise ProfileError(f"the package's Table E.1-1 is damaged: {exc} Reinstall ServiceGate.") from None
    return RuleTable(rules)


def _check_compatible(options: frozenset[Option]) -> None:
    if options >= _EXCLUSIVE:
        raise ProfileError(
            "the options 'retain-long-full-dates' and 'retain-long-modified-dates' cannot be used together: "
            "PS3.15 E.3.6 makes them mutually exclusive. Choose one: full dates keep every date unchanged, "
            "modified dates shift them by a per-patient offset."
        )


def validate_options(options: Iterable[str]) -> frozenset[Option]:
    """Parse option names as the CLI or configuration spells them; ProfileError says what is allowed."""
    allowed = [o.value for o in Option]
    parsed: set[Option] = set()
    for raw in options:
        name = str(raw).strip().lower().replace("_", "-")
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ProfileError(f"unknown de-identification option '{raw}'{hint}; the options are {', '.join(allowed)}.")
        parsed.add(Option(name))
    result = frozenset(parsed)
    _check_compatible(result)
    return result


def action_for(rule: Rule, options: frozenset[Option]) -> str:
    """The rule's raw action code under `options`: an option with a cell for the row overrides the Basic Profile.

    When several selected options override the row differently, the most protective code wins
    (see the module docstring). Raises ProfileError for the mutually exclusive date options.
    """
    _check_compatible(options)
    codes = [code for option, code in rule.overrides.items() if option in options]
    return max(codes, key=_PROTECTION.__getitem__) if codes else rule.basic


@dataclass(frozen=True)
class SafePrivate:
    """One private attribute known to be safe (Table E.3.10-1 or the site's configuration)."""

    group: int  # odd, e.g. 0x7053
    creator: str  # stripped; compared case-sensitively, as the standard spells it
    element: int  # the low byte, e.g. 0x00 for (7053,xx00)
    vr: str
    meaning: str


_PRIVATE_ELEMENT = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,\s*xx([0-9A-Fa-f]{2})\s*\)?")


def parse_safe_private(text_rows: Iterable[Mapping[str, str]]) -> list[SafePrivate]:
    """Parse rows with the columns of Table E.3.10-1 (Data Element, Private Creator, VR, VM, Meaning).

    "Data Element" is written (gggg,xxee) with an odd group; Private Creator must not be blank.
    """
    parsed = []
    for number, row in enumerate(text_rows, start=1):
        element, creator = (row.get("Data Element") or "").strip(), (row.get("Private Creator") or "").strip()
        match = _PRIVATE_ELEMENT.fullmatch(element)
        group, low = (int(match.group(1), 16), int(match.group(2), 16)) if match else (0, 0)
        problem = ("'Data Element' must look like (7053,xx00)" if not match
                   else "the group must be odd and above 0008 (a private group)" if group % 2 == 0 or group < 0x0009
                   else "'Private Creator' is blank" if not creator
                   else "'Private Creator' is longer than 64 characters" if len(creator) > 64 else "")
        if problem:
            raise ProfileError(f"safe-private row {number} ({element!r}, {creator!r}): {problem}.")
        parsed.append(SafePrivate(group=group, creator=creator, element=low, vr=(row.get("VR") or "").strip(),
                                  meaning=(row.get("Meaning") or "").strip()))
    return parsed


def read_safe_private(path: Path) -> tuple[SafePrivate, ...]:
    """A site's own safe private attributes: a CSV file with the columns of Table E.3.10-1."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return tuple(parse_safe_private(csv.DictReader(handle)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProfileError(f"{path}: cannot read the safe private list ({exc}); give a CSV file with the columns "
                           "Data Element, Private Creator, VR, VM, Meaning") from None
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


@functools.cache
def standard_safe_private() -> tuple[SafePrivate, ...]:
    """The standard's sample list of safe private attributes (Table E.3.10-1, 2023b), from the package data."""
    try:
        rows = _read_data(SAFE_PRIVATE_FILE, ["Data Element", "Private Creator", "VR", "VM", "Meaning"])
        return tuple(parse_safe_private(row for _, row in rows))
    except ProfileError as exc:
        raise ProfileError(f"the package's {SAFE_PRIVATE_FILE} is damaged: {exc} Reinstall ServiceGate.") from None


def safe_private_list(extra: Iterable[SafePrivate] = ()) -> frozenset[tuple[int, str, int]]:
    """Keys (group, creator, element low byte) of the standard's safe private attributes plus `extra`."""
    return frozenset((s.group, s.creator.strip(), s.element) for s in (*standard_safe_private(), *extra))
