"""The portal's second line of defence: does an uploaded DICOM file look de-identified?

The device de-identifies every study with `anonymizer` before it uploads it, and verifies the written
file there. The portal does not take that on trust: a bug, an old agent or a tampered device must not
be able to deposit patient data here unnoticed. `check_file` looks at what arrived, knowing nothing of
the original, and lists the reasons to reject it:

1. it is not readable as DICOM (not DICOM, no Part 10 header, truncated, malformed);
2. Patient Identity Removed (0012,0062) is not YES;
3. an attribute of PS3.15 Table E.1-1 holds a value the Basic Profile (no options) does not allow,
   at any depth of sequences: X (removed) must be absent or empty; Z, D and the combined codes must be
   absent, empty or a dummy value the anonymizer writes; a UID the profile replaces (U) must be a keyed
   UID in the 2.25 arc. SOP, Study and Series Instance UIDs and the file meta's Media Storage SOP
   Instance UID must be there and in the 2.25 arc;
4. a private attribute is not on the safe private list (PS3.15 Table E.3.10-1).

The action codes come from the anonymizer's own table, and the dummy values from the anonymizer's own
constants, so that the two lines of defence cannot drift apart. What this check cannot see: text the C
action cleans, and values that are neither names nor IDs by their place (a name typed into a series
description). Those stay the anonymizer's job (`anonymizer.verify` compares with the original).

A file de-identified with options (retained dates, device identity...) fails here: the portal accepts
only the Basic Profile. Problems name attributes by tag and keyword, never by value: the value may be
the very patient data the check is there to stop.
"""

from __future__ import annotations

import re
import struct
import threading
import warnings
from pathlib import Path

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

# _DUMMY and _FREE_TEXT_VRS are what `_Walker` writes as dummies, and where: imported rather than copied,
# so a dummy the anonymizer writes is always one the portal accepts (they are constants, private by name only).
from anonymizer.deidentify import _DUMMY, _FREE_TEXT_VRS
from anonymizer.profile import ACTION_CODES, RuleTable, action_for, safe_private_list
from anonymizer.pseudonyms import is_well_known
from anonymizer.values import BINARY_VRS, CODE_TAGS, PIXEL_TAGS

DEFER_BYTES = 64 * 1024  # larger values stay on disk until the check reaches them
UNDEFINED_LENGTH = 0xFFFFFFFF
# The keyed pseudonyms the anonymizer writes into Patient's Name and Patient ID (Z and D allow a dummy).
# They are built inline in `Pseudonymizer.patient_name` ("ANONYMOUS^" + 8 hex digits) and
# `Pseudonymizer.patient_id` ("SG-" + 16 hex digits), not importable constants: their forms are restated here.
PSEUDONYMS = {Tag(0x0010, 0x0010): re.compile(r"ANONYMOUS\^[0-9A-F]{8}"),
              Tag(0x0010, 0x0020): re.compile(r"SG-[0-9A-F]{16}")}
# `Pseudonymizer.uid`: "2.25." and the decimal of a 128-bit number; digits only, so nothing else hides in it.
KEYED_UID = re.compile(r"2\.25\.(0|[1-9][0-9]{0,38})")
BINARY_DUMMY = b"\x00\x00"  # what `_Walker._dummy` writes for a binary value
# The instance's own UIDs: present and keyed, always (a well-known UID is no instance's).
INSTANCE_UIDS = (Tag(0x0008, 0x0018), Tag(0x0020, 0x000D), Tag(0x0020, 0x000E))  # SOP, Study, Series
MEDIA_SOP_INSTANCE_UID = Tag(0x0002, 0x0003)
PATIENT_IDENTITY_REMOVED = Tag(0x0012, 0x0062)
# The codes that replace a value by an empty or a dummy one (X/Z/U*: empty, a dummy sequence, or keyed UIDs).
REPLACED = frozenset(code for code in ACTION_CODES if code not in ("X", "U", "K", "C"))
# What pydicom and struct raise on damaged input. TypeError and AttributeError are left out: they are bugs here.
_MALFORMED = (ValueError, KeyError, IndexError, struct.error, OverflowError, NotImplementedError, BytesLengthException)
_WARNINGS_LOCK = threading.Lock()


class _Unreadable(Exception):
    """The file cannot be checked; the message says why, without any value of the file."""


def check_file(path: Path) -> list[str]:
    """The reasons this file must not be accepted as de-identified; empty: it passes. Never raises for bad input."""
    try:
        # pydicom warns about every odd value, quoting it: the problems returned here are what counts.
        # catch_warnings changes process-wide state; checks run one at a time, so that two of them in the
        # portal's thread pool cannot leave each other's filter in place for good.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dataset = _read(Path(path))
            return _Check(RuleTable.load(), safe_private_list()).file(dataset)
    except _Unreadable as exc:
        return [f"not readable as DICOM: {exc}"]
    except InvalidDicomError:
        return ["not readable as DICOM: no 'DICM' prefix after the 128-byte preamble (not a DICOM Part 10 file)"]
    except EOFError:
        return ["not readable as DICOM: the file is truncated"]
    except OSError as exc:
        return [f"not readable as DICOM: the file cannot be read ({exc.strerror or type(exc).__name__})"]
    except _MALFORMED:
        return ["not readable as DICOM: malformed data (a tag, length, VR or value cannot be parsed)"]


def _read(path: Path) -> Dataset:
    """The file, large values deferred. pydicom reads a file cut short without complaint (a deferred value
    is skipped by seeking, a cut element header ends the data set): the lengths tell the cut."""
    size = path.stat().st_size
    dataset = pydicom.dcmread(path, defer_size=DEFER_BYTES)
    end: int | None = None  # where the last element read ends; None: a sequence, whose end is not known here
    for tag in sorted(dataset.keys()):
        elem = dataset.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement) and elem.length != UNDEFINED_LENGTH:
            end = elem.value_tell + elem.length
            if end > size:  # (the tag is not named: in a damaged file it may be read from a value's bytes)
                raise _Unreadable("the file is truncated or damaged (an element runs past the end of the file)")
        else:
            end = None
    if end is not None and end < size:
        raise _Unreadable("the file is truncated or damaged (it ends inside an element header)")
    if not len(dataset):
        raise _Unreadable("the file holds no data set after its header")
    # A cut exactly between two elements leaves no trace in the lengths, but an image always has pixel data.
    if ("Rows" in dataset or "Image Storage" in UID(str(dataset.get("SOPClassUID", ""))).name) and \
            not any(t in dataset for t in PIXEL_TAGS):
        raise _Unreadable("the file is truncated (an image without pixel data)")
    return dataset


class _Check:
    """One walk over a file: every element at every depth against Table E.1-1 and the safe private list."""

    def __init__(self, table: RuleTable, safe: frozenset[tuple[int, str, int]]) -> None:
        self.table, self.safe = table, safe
        self.problems: list[str] = []

    def file(self, dataset: Dataset) -> list[str]:
        removed = dataset.get(PATIENT_IDENTITY_REMOVED)
        if removed is None or removed.value != "YES":
            self.problems.append(f"{_name(PATIENT_IDENTITY_REMOVED)} is {'missing' if removed is None else 'not YES'}")
        meta = getattr(dataset, "file_meta", None) or Dataset()
        for tag in [*INSTANCE_UIDS, MEDIA_SOP_INSTANCE_UID]:
            if tag not in (meta if tag == MEDIA_SOP_INSTANCE_UID else dataset):
                self.problems.append(f"{_name(tag)} is missing: it must be a UID in the 2.25 arc")
        self.dataset(meta, "", dummy=False)
        self.dataset(dataset, "", dummy=False)
        return self.problems

    def dataset(self, ds: Dataset, where: str, *, dummy: bool) -> None:
        """`dummy`: inside a sequence the profile replaces (Z, D...), whose free text the anonymizer
        replaces by dummies too, listed in the table or not."""
        tags = list(ds.keys())  # as held: iterating the Dataset itself would load the pixel data
        for tag in tags:
            if tag in PIXEL_TAGS:
                continue  # never loaded: the image is not text
            elem = ds[tag]
            if tag.is_private:
                self.private(ds, tags, elem, where, dummy=dummy)
                continue
            rule = self.table.rule_for(int(tag))
            code = action_for(rule, frozenset()) if rule is not None else None
            if code == "X":
                passes, problem = elem.is_empty, "is not empty: the profile removes it"
            elif code == "U" or (elem.VR == "UI" and code in REPLACED):
                passes, problem = _keyed_uids(elem), "is not a UID in the 2.25 arc: the profile replaces it"
            elif elem.VR == "SQ":  # a dummy sequence when replaced; otherwise its items are checked as they are
                self.items(elem, where, dummy=dummy or code in REPLACED)
                continue
            elif code in REPLACED or (code is None and dummy and _free_text(elem)):
                passes, problem = elem.is_empty or _is_dummy(elem), "is neither empty nor a dummy value: " \
                                                                     "the profile replaces it"
            else:
                continue  # not in the table (or kept, or cleaned, under an option): nothing to tell here
            if not passes:
                name = _name(tag, (rule.keyword or rule.name) if rule is not None else "")
                self.problems.append(f"{name}{where} {problem}")

    def private(self, ds: Dataset, tags: list[BaseTag], elem: DataElement, where: str, *, dummy: bool) -> None:
        """Safe private attributes stay, and their creator with them (`_Walker._keep_private`'s rule)."""
        tag = BaseTag(elem.tag)
        if 0x0010 <= tag.element <= 0x00FF:  # a private creator: allowed with a safe attribute in its block
            if not any(t.group == tag.group and t.element >> 8 == tag.element for t in tags):
                self.problems.append(f"{tag} private creator{where} has no attribute in its block")
            return
        creator = ds.get(Tag(tag.group, tag.element >> 8)) if tag.element >= 0x1000 else None
        name = creator.value.strip() if creator is not None and isinstance(creator.value, str) else None
        if name is None or (tag.group, name, tag.element & 0xFF) not in self.safe:
            self.problems.append(f"{_name(tag)}{where} is not on the safe private list")
        elif elem.VR == "SQ":
            self.items(elem, where, dummy=dummy)

    def items(self, elem: DataElement, where: str, *, dummy: bool) -> None:
        for number, item in enumerate(elem.value or [], start=1):
            self.dataset(item, f" in {_name(BaseTag(elem.tag))} item {number}{where}", dummy=dummy)


def _name(tag: BaseTag, keyword: str = "") -> str:
    """"(0010,0010) PatientName"; a private tag has no keyword."""
    keyword = keyword_for_tag(tag) or keyword or ("private attribute" if tag.is_private else "unknown attribute")
    return f"{tag} {keyword}"


def _values(elem: DataElement) -> list[object]:
    return list(elem.value) if isinstance(elem.value, MultiValue | list) else [elem.value]


def _keyed_uids(elem: DataElement) -> bool:
    """Every UID keyed into the 2.25 arc, or well-known (the anonymizer keeps those: they identify no one);
    an instance's own UIDs must be keyed. An empty value stays empty in the anonymizer too."""
    if elem.tag in INSTANCE_UIDS or elem.tag == MEDIA_SOP_INSTANCE_UID:
        return not elem.is_empty and all(KEYED_UID.fullmatch(str(v)) for v in _values(elem))
    return all(not v or KEYED_UID.fullmatch(str(v)) or is_well_known(str(v)) for v in _values(elem))


def _free_text(elem: DataElement) -> bool:
    """An attribute the table does not list that `_Walker` makes a dummy inside a replaced sequence."""
    return elem.VR in _FREE_TEXT_VRS and elem.tag not in CODE_TAGS


def _is_dummy(elem: DataElement) -> bool:
    """The value is one the anonymizer writes for Z or D: its keyed pseudonym, or the dummy of the VR."""
    if elem.tag in PSEUDONYMS and all(PSEUDONYMS[elem.tag].fullmatch(str(v)) for v in _values(elem)):
        return True
    dummy = BINARY_DUMMY if elem.VR in BINARY_VRS else _DUMMY.get(elem.VR)
    if dummy is None:
        return False
    if isinstance(dummy, str):
        return all(str(v) == dummy for v in _values(elem))
    return all(v == dummy for v in _values(elem))
