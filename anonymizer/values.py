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

Elements are searched as pydicom read them: a value is decoded here, from its raw bytes in the dataset's
character sets, only when it can hold a name or an ID (`element_hits`). pydicom's own conversion of every
value (validation, MultiValue and PersonName objects) costs more than all the rest of de-identifying a
file, and most values are numbers, codes and dates that are never searched. `walk` and `elements` convert
only sequences (to reach their items) and elements whose VR the raw form does not tell (`resolved`).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property

from pydicom.charset import decode_bytes, default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import TEXT_VR_DELIMS

Element = DataElement | RawDataElement  # as a dataset holds it: raw until something converts it

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
# Text VRs whose bytes are in the dataset's character sets; the others are in the default repertoire.
CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})


def _tags(keywords: Iterable[str]) -> frozenset[int]:
    return frozenset(t for k in keywords if (t := tag_for_keyword(k)) is not None)


CODE_TAGS = _tags(CODE_KEYWORDS)
IDENTIFYING_TAGS = _tags(IDENTIFYING_KEYWORDS)


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
        return self._pattern

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        if not self.long:
            return None
        ordered = sorted(self.long, key=len, reverse=True)
        return re.compile("|".join(re.escape(v) for v in ordered), re.IGNORECASE)

    @cached_property
    def _lowered(self) -> tuple[tuple[str, str], ...]:
        return tuple((v, v.lower()) for v in self.long)

    def hits_in_text(self, text: str) -> set[str]:
        lowered = text.lower()
        found = {v for v, low in self._lowered if low in lowered}
        if self.short:
            stripped = text.strip()
            if stripped in self.short:
                found.add(stripped)
            for part in re.split(r"[\\^=]", stripped):
                if part in self.short:
                    found.add(part)
        return found

    def hits_in_bytes(self, data: bytes, encodings: Iterable[str] = ("utf-8",)) -> set[str]:
        """Long values only: a short value inside arbitrary bytes is noise, not evidence."""
        if not self.long:
            return set()
        lowered = data.lower()
        return {value for value, needles in self._needles(tuple(encodings)) if any(n in lowered for n in needles)}

    def _needles(self, encodings: tuple[str, ...]) -> list[tuple[str, list[bytes]]]:
        """Each long value, lower-cased, in every encoding it can be written in (computed once per set)."""
        cached: dict[tuple[str, ...], list[tuple[str, list[bytes]]]] = self.__dict__.setdefault("_needle_cache", {})
        if encodings not in cached:
            cached[encodings] = [(value, [n for e in encodings if (n := _encoded(value.lower(), e))])
                                 for value in self.long]
        return cached[encodings]


def _encoded(text: str, encoding: str) -> bytes:
    try:
        return text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return b""


def element_hits(elem: Element, values: IdentifyingValues, encodings: list[str] | None = None) -> set[str]:
    """The identifying values one element holds. Only values that can carry a name or an ID are searched:
    text (substrings of long values; whole values and name components of short ones in name and ID text)
    and binary values (long values only). Numbers, dates, times and code strings are not: they are handled
    by the table, and a Study ID "1" must not take every Instance Number "1" with it. A raw element's text
    is decoded in `encodings`, the character sets of its dataset (`encodings_of`)."""
    vr = vr_of(elem)
    if elem.value is None or vr == "SQ" or elem.tag in CODE_TAGS:
        return set()
    if vr in BINARY_VRS:
        return values.hits_in_bytes(elem.value) if isinstance(elem.value, bytes) else set()
    if vr not in SEARCHED_VRS:
        return set()
    text = element_text(elem, encodings)
    if text is None:
        return set()
    if vr == "UI":  # a UID is one value, not text: "1.2.3.4.5" must not match inside "1.2.3.4.5.0"
        return {v.strip("\0 ") for v in text.split("\\")} & (values.long | values.short)
    found = values.hits_in_text(text)
    return found if vr in NAME_AND_ID_VRS else found & values.long


def vr_of(elem: Element) -> str:
    """The element's VR. A raw element read in implicit VR has none: the dictionary's is taken (`resolved`
    converts the elements whose VR the dictionary cannot tell)."""
    if isinstance(elem, RawDataElement) and elem.VR in (None, "UN"):
        return _dictionary_vr(int(elem.tag)) or "UN"
    return str(elem.VR)


@cache
def _dictionary_vr(tag: int) -> str | None:
    """The dictionary VR of a standard tag; None for a private, unknown or ambiguous one ("US or SS")."""
    if BaseTag(tag).is_private:
        return None
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return None
    return None if " or " in vr else vr


def resolved(dataset: Dataset, tag: BaseTag, elem: Element | None = None) -> Element:
    """The element at `tag` (`elem`, when the caller has it as the dataset holds it), left raw when its VR and
    value can be read from the raw form; converted by pydicom when it is a sequence (to reach its items),
    when its VR is not known from the raw form (private or unknown tags read in implicit VR or as UN,
    ambiguous VRs) or when its value is still on disk."""
    if elem is None:
        elem = dataset.get_item(tag, keep_deferred=True)
    if isinstance(elem, RawDataElement):
        vr = elem.VR if elem.VR not in (None, "UN") else _dictionary_vr(tag)
        if vr is None or vr == "SQ" or elem.value is None:
            return dataset[tag]
    return elem


def cached_encodings(cache: dict[int, list[str]], dataset: Dataset) -> list[str]:
    """`encodings_of(dataset)`, computed once per dataset (item) of one walk: `cache` lives as long as the walk."""
    found = cache.get(id(dataset))
    if found is None:
        found = cache[id(dataset)] = encodings_of(dataset)
    return found


def encodings_of(dataset: Dataset) -> list[str]:
    """The character sets a raw text value of `dataset` is decoded in: the ones pydicom would use."""
    charset = dataset.original_character_set or dataset._character_set
    return [charset] if isinstance(charset, str) else list(charset)


def element_values(elem: Element, encodings: list[str] | None = None) -> list[str]:
    """The element's values as text (a PN's whole names), raw ones decoded; [] for no value or a non-text VR."""
    text = element_text(elem, encodings)
    if not text:
        return []
    return [text] if vr_of(elem) in _SINGLE_VALUED else text.split("\\")


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


def element_text(elem: Element, encodings: list[str] | None = None) -> str | None:
    """The value as text, for text VRs; None for binary values, sequences and numbers. Several values are
    joined by backslashes; a raw value is decoded in `encodings` (default: the default repertoire) and
    stripped of its padding like pydicom strips each value."""
    vr = vr_of(elem)
    if vr not in TEXT_VRS or elem.value is None:
        return None
    if isinstance(elem, DataElement):
        return "\\".join(str(v) for v in _values(elem.value))
    raw = elem.value
    if not isinstance(raw, bytes):
        return None
    if vr in CHARSET_VRS:
        text = decode_bytes(raw, encodings or [default_encoding], TEXT_VR_DELIMS)
    else:
        text = raw.decode(default_encoding)
    if vr in _SINGLE_VALUED:
        return text.rstrip(" \0")
    return "\\".join(v.strip(" \0") if vr != "PN" else v.rstrip(" \0") for v in text.split("\\"))


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


def elements(dataset: Dataset) -> Iterator[Element]:
    """The elements of one dataset level as `resolved` gives them, pixel data left out without being loaded."""
    for tag, elem in list(dataset.items()):  # as held: raw elements stay raw (iterating the Dataset converts)
        if tag not in PIXEL_TAGS:
            yield resolved(dataset, tag, elem)


def walk(dataset: Dataset, path: str = "") -> Iterator[tuple[str, Dataset, Element]]:
    """Every element at every depth (file meta first when present), with the dataset that holds it and the
    readable path of that dataset (`f"{path}{elem.tag}"` names the element; formatted only where needed);
    no pixel data. Sequences are converted, so their items can be walked."""
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and not path:
        for elem in elements(meta):
            yield "meta", meta, elem
    for elem in elements(dataset):
        yield path, dataset, elem
        if elem.VR == "SQ" and elem.value is not None:
            for index, item in enumerate(elem.value):
                yield from walk(item, f"{path}{elem.tag}[{index}]>")


def _values(value: object) -> list[object]:
    """The values of a possibly multi-valued element (a PersonName or str is one value, not many)."""
    return list(value) if isinstance(value, list | tuple | MultiValue) else [value]
