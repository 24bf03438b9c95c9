"""Identifying values: what counts as one, how to find one, and how to scrub one out of text.

An *identifying value* of a dataset is a value the profile removes or replaces and that names
or points to the patient or the original instances:

- every component of every person name the profile removes or replaces (family, given, middle,
  prefix, suffix, in each of the alphabetic, ideographic and phonetic groups), and each whole group;
- the patient's IDs: Patient ID, Other Patient IDs (and the IDs in Other Patient IDs Sequence),
  Study ID, Accession Number, and the Patient's Birth Date;
- the patient's contact details (address, telephone numbers, telecom information) and the names and
  addresses of the institution and department, when the profile removes them;
- the original instance UIDs the profile replaces (Study, Series, SOP Instance, Frame of Reference,
  and every referenced instance UID).

Values of 4 characters or more (6 digits or more for a number) are searched as substrings
(case-insensitive for text); shorter ones (a patient named "Li", a study ID "7") only match an element
of name or ID text whose whole value, or one of whose name components, is equal, so they do not make
every file fail. Numbers, dates, times and code strings are not searched (`element_hits`).
A value an option retains (for example the UIDs under Retain
UIDs, the birth date under Retain Longitudinal Temporal Information with Full Dates) is not an
identifying value, and neither is a dummy word (ANONYMOUS, REMOVED, UNKNOWN...), which names nobody.
These sets are used twice: by the safety net inside `deidentify` and by the
independent verification pass before anything leaves.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

SUBSTRING_MIN = 4  # shorter values only match a whole element value
# Words that name nobody: the dummies ServiceGate writes itself, and what test and already de-identified
# inputs say instead of a name. Searched as bytes they would refuse files for a code meaning ("Test ...").
DUMMY_WORDS = frozenset({"ANONYMOUS", "ANONYMIZED", "ANONYMISED", "ANON", "REMOVED", "UNKNOWN", "TEST",
                         "PATIENT", "PHANTOM", "DEMO"})
# Coded entries carry no names (Annex E); searching them would remove "DCM" because a patient is called so.
CODE_KEYWORDS = frozenset({"CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
                           "LongCodeValue", "URNCodeValue", "ContextIdentifier", "ContextUID", "MappingResource",
                           "MappingResourceUID", "MappingResourceName"})
NUMBER_SUBSTRING_MIN = 6

# Keywords whose (removed or replaced) values identify the patient, beyond person names and UIDs.
IDENTIFYING_KEYWORDS = frozenset({
    "PatientID", "OtherPatientIDs", "StudyID", "AccessionNumber", "PatientBirthDate", "MedicalRecordLocator",
    "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "PersonAddress", "PersonTelephoneNumbers",
})
TEXT_VRS = frozenset({"AE", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT",
                      "AS"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
SEARCHED_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UI", "UR", "UT"})
NAME_AND_ID_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
PLACEHOLDER = "REMOVED"


@dataclass(frozen=True)
class IdentifyingValues:
    long: frozenset[str] = field(default_factory=frozenset)  # searched as substrings
    short: frozenset[str] = field(default_factory=frozenset)  # matched only as a whole value

    def __bool__(self) -> bool:
        return bool(self.long or self.short)

    def __len__(self) -> int:
        return len(self.long) + len(self.short)

    @classmethod
    def of(cls, values: Iterable[str]) -> IdentifyingValues:
        cleaned = {v.strip() for v in values if v and v.strip() and v.strip().upper() not in DUMMY_WORDS}
        return cls(long=frozenset(v for v in cleaned if _searchable(v)),
                   short=frozenset(v for v in cleaned if not _searchable(v)))

    def __or__(self, other: IdentifyingValues) -> IdentifyingValues:
        return IdentifyingValues(self.long | other.long, self.short | other.short)

    def pattern(self) -> re.Pattern[str] | None:
        """One case-insensitive alternation of the long values, longest first."""
        if not self.long:
            return None
        ordered = sorted(self.long, key=len, reverse=True)
        return re.compile("|".join(re.escape(v) for v in ordered), re.IGNORECASE)

    def hits_in_text(self, text: str) -> set[str]:
        found = {v for v in self.long if v.lower() in text.lower()}
        stripped = text.strip()
        found |= {v for v in self.short if stripped == v}
        for part in re.split(r"[\\^=]", stripped):
            if part in self.short:
                found.add(part)
        return found

    def hits_in_bytes(self, data: bytes, encodings: Iterable[str] = ("utf-8",)) -> set[str]:
        """Long values only: a short value inside arbitrary bytes is noise, not evidence."""
        lowered = data.lower()
        found: set[str] = set()
        for value in self.long:
            for encoding in encodings:
                try:
                    needle = value.lower().encode(encoding)
                except (UnicodeEncodeError, LookupError):
                    continue
                if needle and needle in lowered:
                    found.add(value)
                    break
        return found


def element_hits(elem: DataElement, values: IdentifyingValues) -> set[str]:
    """The identifying values one element holds. Only values that can carry a name or an ID are searched:
    text (substrings of long values; whole values and name components of short ones in name and ID text)
    and binary values (long values only). Numbers, dates, times and code strings are not: they are handled
    by the table, and a Study ID "1" must not take every Instance Number "1" with it."""
    if elem.value is None or elem.VR == "SQ" or elem.keyword in CODE_KEYWORDS:
        return set()
    if elem.VR in BINARY_VRS:
        return values.hits_in_bytes(elem.value) if isinstance(elem.value, bytes) else set()
    if elem.VR not in SEARCHED_VRS:
        return set()
    if elem.VR == "UI":  # a UID is one value, not text: "1.2.3.4.5" must not match inside "1.2.3.4.5.0"
        return {str(v).strip() for v in _values(elem.value)} & (values.long | values.short)
    text = element_text(elem)
    if text is None:
        return set()
    found = values.hits_in_text(text)
    return found if elem.VR in NAME_AND_ID_VRS else found & values.long


def _searchable(value: str) -> bool:
    """Searched as a substring: 4 characters or more, or 6 digits or more for a number (a 4-digit Study ID
    would otherwise be found inside every decimal value and every UID)."""
    return len(value) >= (NUMBER_SUBSTRING_MIN if value.isdigit() else SUBSTRING_MIN)


def person_name_parts(value: object) -> set[str]:
    """Every group and every component of a PN value (possibly multi-valued)."""
    parts: set[str] = set()
    for single in _values(value):
        for group in str(single).split("="):
            if group.strip("^ "):
                parts.add(group.strip("^ "))
            parts.update(c.strip() for c in group.split("^") if c.strip())
    return parts


def element_text(elem: DataElement) -> str | None:
    """The value as text, for text VRs; None for binary values, sequences and numbers."""
    if elem.VR not in TEXT_VRS or elem.value is None:
        return None
    return "\\".join(str(v) for v in _values(elem.value))


def scrub(text: str, values: IdentifyingValues) -> str:
    """Replace every identifying value inside free text with a placeholder (the C action for text)."""
    pattern = values.pattern()
    cleaned = pattern.sub(PLACEHOLDER, text) if pattern else text
    if cleaned.strip() in values.short:
        return PLACEHOLDER
    return cleaned


@contextlib.contextmanager
def tolerant() -> Iterator[None]:
    """Inputs often carry values their VR does not allow (pydicom warns on reading them). The value
    is processed like any other, so the warning is noise here; every other warning stays visible."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR", category=UserWarning)
        yield


# Pixel data is never read here: it may be a gigabyte, deferred on disk (see anonymizer.files), and
# it is no place for text. The Clean Pixel Data rules act on it separately.
PIXEL_TAGS = frozenset({Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009), Tag(0x7FE0, 0x0010)})


def elements(dataset: Dataset) -> Iterator[DataElement]:
    """The elements of one dataset level, pixel data left out without being loaded."""
    for tag in list(dataset.keys()):
        if tag not in PIXEL_TAGS:
            yield dataset[tag]


def walk(dataset: Dataset, path: str = "") -> Iterator[tuple[str, DataElement]]:
    """Every element at every depth (file meta first when present), with a readable path; no pixel data."""
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and not path:
        for elem in meta:
            yield f"meta{elem.tag}", elem
    for elem in elements(dataset):
        here = f"{path}{elem.tag}"
        yield here, elem
        if elem.VR == "SQ" and elem.value is not None:
            for index, item in enumerate(elem.value):
                yield from walk(item, f"{here}[{index}]>")


def _values(value: object) -> list[object]:
    """The values of a possibly multi-valued element (a PersonName or str is one value, not many)."""
    return list(value) if isinstance(value, list | tuple | MultiValue) else [value]
