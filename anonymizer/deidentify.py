"""`deidentify(dataset, profile) -> (dataset, report)`: PS3.15 Annex E, as a pure function.

The input is never changed: the function works on a copy. Each element of the copy, at every
depth, in the file meta information and in private blocks, gets the action Table E.1-1 gives it
under the selected options; then the safety net removes any element still holding an identifying
value (see `anonymizer.values`); then the de-identification attributes are added. The result is
checked again, independently, by `anonymizer.verify` before anything leaves.

Action codes, and how each is carried out here:

    X  remove                                     Z  empty value (an empty sequence for SQ)
    D  a dummy value of the element's VR          K  keep (a sequence: keep and process its items)
    U  keyed UID (`Pseudonymizer.uid`)            C  clean, by the kind of value (`_clean`)

Combined codes (Z/D, X/Z, X/D, X/Z/D, X/Z/U*) depend on the attribute's Type in the IOD at hand,
which a de-identifier without the IOD tables cannot see. ServiceGate resolves each to the choice
that keeps *any* IOD valid: D when D is among the choices, else Z; X/Z/U* keeps the sequence and
replaces the UIDs inside it. A dummy carries no information, so this costs nothing in privacy and
keeps every output valid for `dciodvfy`.

The Patient's Name and Patient ID are not emptied but replaced by keyed pseudonyms, consistent
across files and runs with the same site key (allowed: Z and D both permit a dummy value).

Pixel data is never walked. When a configured pixel-cleaning rule (`anonymizer.pixels`) matches, the
image is admitted despite burned-in text, the rule's byte plan is computed here (refusing what cannot be
cleaned with certainty) and returned in the Report; a value held in memory is blanked in the copy, and a
value still on disk is blanked by `anonymizer.files` while it is copied. Such a copy cannot be written
with pydicom directly: a deferred value has no file to come from once the copy lost the input's name.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from anonymizer.errors import Refused
from anonymizer.pixels import PIXEL_DATA, BlankPlan, PixelRule, blank_bytes, blank_plan, matching_rule
from anonymizer.profile import BASIC_PROFILE_CODE, Option, RuleTable, action_for, safe_private_list
from anonymizer.pseudonyms import Pseudonymizer, is_well_known
from anonymizer.values import (
    BINARY_VRS,
    CODE_TAGS,
    IDENTIFYING_TAGS,
    PIXEL_TAGS,
    PLACEHOLDER,
    Element,
    IdentifyingValues,
    cached_encodings,
    element_hits,
    element_text,
    element_values,
    elements,
    encodings_of,
    person_name_parts,
    resolved,
    scrub,
    tolerant,
    vr_of,
    walk,
)

IMPLEMENTATION_CLASS_UID = UID("2.25.186207744195377394826307461452640371341")  # ServiceGate's, made once with uuid4
IMPLEMENTATION_VERSION = "SERVICEGATE_1"
METHOD_TEXT = "ServiceGate PS3.15 E.1-1 2024b+2026c"

_DATE_VRS = frozenset({"DA", "DT", "TM"})
_LONG_TEXT_VRS = frozenset({"LT", "ST", "UT"})
_FREE_TEXT_VRS = frozenset({"AE", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UT", "OB", "UN"})

_DUMMY: dict[str, Any] = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": "REMOVED", "DA": "19000101", "DS": "0", "DT": "19000101000000",
    "FL": 0.0, "FD": 0.0, "IS": "0", "LO": PLACEHOLDER, "LT": PLACEHOLDER, "PN": "ANONYMOUS", "SH": PLACEHOLDER,
    "SL": 0, "SS": 0, "SV": 0, "ST": PLACEHOLDER, "TM": "000000", "UC": PLACEHOLDER, "UL": 0, "UR": "urn:removed",
    "US": 0, "UT": PLACEHOLDER, "UV": 0, "AT": 0,
}
PATIENT_NAME, PATIENT_ID = Tag(0x0010, 0x0010), Tag(0x0010, 0x0020)


@dataclass(frozen=True)
class Profile:
    """What to do: the options, the site key, and the safe private attributes (standard list + site's)."""

    pseudonymizer: Pseudonymizer
    options: frozenset[Option] = frozenset()
    safe_private: frozenset[tuple[int, str, int]] = field(default_factory=lambda: safe_private_list())
    pixel_rules: tuple[PixelRule, ...] = ()  # Clean Pixel Data: the first that matches an image is applied


@dataclass
class Report:
    """What was done to one dataset. Holds no patient data: only tags, counts and reasons."""

    actions: Counter[str] = field(default_factory=Counter)
    private_removed: int = 0
    private_kept: int = 0
    safety_net: list[str] = field(default_factory=list)  # paths of elements the safety net removed
    options: list[str] = field(default_factory=list)
    pixel_plan: BlankPlan | None = None  # the bytes a pixel-cleaning rule blanks; None when no rule applied

    def to_dict(self) -> dict[str, Any]:
        return {"actions": dict(sorted(self.actions.items())), "private_removed": self.private_removed,
                "private_kept": self.private_kept, "safety_net": list(self.safety_net), "options": self.options,
                "pixel_rule": self.pixel_plan.rule if self.pixel_plan else None}


def deidentify(dataset: Dataset, profile: Profile, *, in_place: bool = False,
               values: IdentifyingValues | None = None) -> tuple[Dataset, Report]:
    """De-identify a copy of `dataset` (or, with `in_place`, the dataset itself: `anonymizer.files` reads
    each input only to de-identify it, and copying every element costs a fifth of a file's time).
    `values`, when the caller already has them, are `identifying_values(dataset, ...)` of this very input.
    Raises Refused when the data must not leave at all."""
    with tolerant():
        rule = refuse_unsafe_content(dataset, profile)
        plan = blank_plan(dataset, rule) if rule is not None else None
        table = RuleTable.load()
        values = values if values is not None else identifying_values(dataset, profile, table)
        patient_key = _patient_key(dataset)
        out = dataset if in_place else copy.deepcopy(dataset)
        # Clean Pixel Data is recorded only where pixels were cleaned: the option alone cleans nothing.
        options = (profile.options - {Option.CLEAN_PIXEL_DATA}) | ({Option.CLEAN_PIXEL_DATA} if plan else set())
        report = Report(options=sorted(o.value for o in options), pixel_plan=plan)
        _Walker(profile, table, values, patient_key, report).process(out)
        _safety_net(out, values, report, profile)
        _drop_orphan_overlays(out)
        _regenerate_file_meta(out)
        if plan is not None:
            _blank_in_memory(out, plan)
            out.BurnedInAnnotation = "NO"  # PS3.15 E.3.1
        _add_method_attributes(out, frozenset(options))
    return out, report


def refuse_unsafe_content(dataset: Dataset, profile: Profile) -> PixelRule | None:
    """Burned-in text and encapsulated documents cannot be cleaned by attribute rules: refuse them, unless a
    configured pixel-cleaning rule matches the image. Returns that rule (it is applied whenever it matches)."""
    if "EncapsulatedDocument" in dataset:
        raise Refused("an encapsulated document (PDF, CDA, ...) can carry patient data in its content; "
                      "it is never sent")
    rule = matching_rule(dataset, profile.pixel_rules)
    if rule is not None:
        return rule
    burned = str(dataset.get("BurnedInAnnotation", "")).upper()
    if burned == "YES":
        raise Refused("Burned In Annotation is YES: patient data may be written into the pixels")
    if not burned and _commonly_burned_in(dataset):
        raise Refused(f"no Burned In Annotation attribute, and {_kind(dataset)} images commonly carry burned-in "
                      f"text; configure a pixel-cleaning rule for this device to send them")
    return None


def _blank_in_memory(dataset: Dataset, plan: BlankPlan) -> None:
    """Blank a pixel data value that is held in memory; one still on disk is blanked while it is copied."""
    elem = dataset.get_item(PIXEL_DATA, keep_deferred=True)
    if isinstance(elem, RawDataElement):
        if elem.value is not None:
            dataset[PIXEL_DATA] = elem._replace(value=blank_bytes(elem.value, plan))
    elif elem is not None and isinstance(elem.value, bytes):
        elem.value = blank_bytes(elem.value, plan)


# ---- identifying values ---------------------------------------------------------------------------

def identifying_values(dataset: Dataset, profile: Profile, table: RuleTable) -> IdentifyingValues:
    """The identifying values of `dataset` under `profile` (definition in `anonymizer.values`), read
    from the raw values: nothing but sequences is converted."""
    found: set[str] = set()
    encodings: dict[int, list[str]] = {}  # per dataset (item), computed once
    for _, ds, elem in walk(dataset):
        vr = vr_of(elem)
        if (vr not in ("PN", "UI") and elem.tag not in IDENTIFYING_TAGS) or elem.tag.is_private or elem.value is None:
            continue  # only names, the identifying attributes and UIDs give identifying values
        rule = table.rule_for(int(elem.tag))
        code = action_for(rule, profile.options) if rule else None
        if code is None or code.replace("/", "").strip("K") == "":
            continue  # kept (no rule, or K under the options): an option retains it
        if vr == "PN" or elem.tag in IDENTIFYING_TAGS or (vr == "UI" and "U" in code and
                                                          Option.RETAIN_UIDS not in profile.options):
            given = element_values(elem, cached_encodings(encodings, ds))
            if vr == "PN":
                found |= person_name_parts(given)
            elif vr == "UI":
                found |= {v for v in given if not is_well_known(v)}
            else:
                found |= set(given)
    return IdentifyingValues.of(found)


def _patient_key(dataset: Dataset) -> str:
    """What the patient's pseudonyms and date offset derive from: the Patient ID, else the name."""
    return str(dataset.get("PatientID", "") or dataset.get("PatientName", "") or "")


# ---- the walk -------------------------------------------------------------------------------------

class _Walker:
    def __init__(self, profile: Profile, table: RuleTable, values: IdentifyingValues, patient_key: str,
                 report: Report) -> None:
        self.profile, self.table, self.values = profile, table, values
        self.patient_key, self.report = patient_key, report

    def process(self, dataset: Dataset, mode: str | None = None) -> None:
        """Apply the table to one dataset level. `mode` is what an enclosing sequence's action asks of
        the attributes the table does not list: "D" (a dummy sequence: their text becomes dummies), "C"
        (a cleaned sequence: identifying values are scrubbed from their text), None (they stay).
        An element that is removed or kept as it is stays raw (never converted): see `anonymizer.values`."""
        kept_blocks: set[tuple[int, int]] = set()
        encodings = encodings_of(dataset)
        for tag, held in list(dataset.items()):
            if tag in PIXEL_TAGS:
                continue  # kept as it is, never loaded: pixel cleaning acts on it separately
            if tag.element == 0x0000:  # group lengths: retired, and stale once anything changes
                del dataset[tag]
                continue
            if tag.is_private:
                if self._keep_private(dataset, tag):
                    kept_blocks.add((tag.group, tag.element >> 8))
                    self.report.private_kept += 1
                    continue
                if not _is_creator(tag):
                    del dataset[tag]
                    self.report.private_removed += 1
                continue
            self._apply(dataset, tag, held, mode, encodings)
        # A private creator stays only while an element of its block stays.
        for tag in list(dataset.keys()):
            if _is_creator(tag) and (BaseTag(tag).group, BaseTag(tag).element) not in kept_blocks:
                del dataset[tag]

    def _keep_private(self, dataset: Dataset, tag: BaseTag) -> bool:
        if Option.RETAIN_SAFE_PRIVATE not in self.profile.options or _is_creator(tag) or tag.element < 0x1000:
            return False
        creator = dataset.get((tag.group, tag.element >> 8))
        if creator is None or not isinstance(creator.value, str):
            return False
        return (tag.group, creator.value.strip(), tag.element & 0xFF) in self.profile.safe_private

    def _apply(self, dataset: Dataset, tag: BaseTag, held: Element, mode: str | None, encodings: list[str]) -> None:
        rule = self.table.rule_for(int(tag))
        code = resolve(action_for(rule, self.profile.options)) if rule else addition_for(tag, self.profile)
        if code == "X":
            self.report.actions[code] += 1
            del dataset[tag]
            return
        elem = resolved(dataset, tag, held)
        if code is None:
            self._unlisted(dataset, elem, mode, encodings)
            return
        self.report.actions[code] += 1
        vr = vr_of(elem)
        if code == "K":
            self._recurse(elem, mode)
        elif vr == "SQ" and code in ("Z", "D", "U*"):
            # A dummy sequence rather than an empty one: some IODs require items wherever the sequence is
            # present, so emptying it can make the file invalid. Its UIDs are replaced by their own rules
            # and every free-text value in it becomes a dummy, so it holds nothing of the original.
            self._recurse(elem, "D")
        elif code in ("U", "U*") and vr == "UI":
            self._replace_uids(dataset, elem, encodings)
        elif tag in (PATIENT_NAME, PATIENT_ID) and code in ("Z", "D", "U*"):
            dataset[tag] = DataElement(tag, vr, self._pseudonym(tag))
        elif code in ("Z", "U*"):
            dataset[tag] = DataElement(tag, vr, empty_value_for_VR(vr))
        elif code == "D":
            self._dummy(dataset, elem, encodings)
        elif code == "C":
            self._clean(dataset, dataset[tag])
        else:  # a code the table does not use; fail closed
            del dataset[tag]

    def _recurse(self, elem: Element, mode: str | None) -> None:
        if isinstance(elem, DataElement) and elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                self.process(item, mode)

    def _unlisted(self, dataset: Dataset, elem: Element, mode: str | None, encodings: list[str]) -> None:
        """An attribute the table does not list. Long free text (LT, ST, UT) is removed; other values are
        kept, except inside a sequence whose action was D or C, where free text is replaced or cleaned
        too. Codes always stay: coded entries carry no names (Annex E)."""
        vr = vr_of(elem)
        if vr == "SQ":
            self._recurse(elem, mode)
        elif elem.tag in CODE_TAGS or vr not in _FREE_TEXT_VRS:
            return
        elif mode is None:
            if vr in _LONG_TEXT_VRS:  # an addition: long free text the table does not list is removed
                del dataset[elem.tag]
                self.report.actions["X+"] += 1
        elif mode == "D":
            self._dummy(dataset, elem, encodings)
        else:
            self._clean(dataset, dataset[elem.tag])

    def _pseudonym(self, tag: BaseTag) -> str:
        pseudonymizer = self.profile.pseudonymizer
        return pseudonymizer.patient_name(self.patient_key) if tag == PATIENT_NAME else \
            pseudonymizer.patient_id(self.patient_key)

    def _replace_uids(self, dataset: Dataset, elem: Element, encodings: list[str]) -> None:
        """Every UID of the element replaced by its keyed UID (well-known UIDs stay, see `Pseudonymizer.uid`)."""
        uids = [self.profile.pseudonymizer.uid(v) if v else v for v in element_values(elem, encodings)]
        dataset[elem.tag] = DataElement(elem.tag, "UI", uids if len(uids) != 1 else uids[0])

    def _dummy(self, dataset: Dataset, elem: Element, encodings: list[str]) -> None:
        vr = vr_of(elem)
        if vr == "SQ":
            self._recurse(elem, "D")  # a dummy sequence: the same structure, its text replaced by dummies
        elif vr == "UI":
            self._replace_uids(dataset, elem, encodings)
        elif vr in BINARY_VRS:
            dataset[elem.tag] = DataElement(elem.tag, vr, b"\x00\x00")
        elif vr in _DUMMY:
            dataset[elem.tag] = DataElement(elem.tag, vr, _DUMMY[vr])
        else:
            del dataset[elem.tag]

    def _clean(self, dataset: Dataset, elem: DataElement) -> None:
        """C: keep what is useful, remove what identifies. By kind of value:

        - dates and times under Retain Longitudinal Temporal Information with Modified Dates: shifted by
          the patient's keyed offset (whole days, so intervals stay true); an unparsable one is removed;
        - sequences (code sequences, SR content, graphics): kept, every item processed by the table, and
          the text of attributes the table does not list (an SR's Text Value) cleaned the same way;
        - person names: replaced by a dummy name;
        - text: kept, with every identifying value inside it replaced by "REMOVED";
        - binary values (overlay bits, graphics data): cannot be read for text, so they are removed;
        - numbers and codes: kept (they carry no names).
        """
        if elem.VR == "SQ":
            self._recurse(elem, "C")
        elif elem.VR in _DATE_VRS and Option.RETAIN_LONG_MODIFIED_DATES in self.profile.options:
            try:
                elem.value = _map(elem.value, lambda v: self.profile.pseudonymizer.shift_date(
                    v, elem.VR, self.patient_key))
            except ValueError:
                del dataset[elem.tag]
        elif elem.VR == "PN":
            elem.value = _DUMMY["PN"]
        elif elem.VR in BINARY_VRS:
            del dataset[elem.tag]
        elif (text := element_text(elem)) is not None:
            elem.value = scrub(text, self.values) if elem.VM <= 1 else \
                _map(elem.value, lambda v: scrub(v, self.values))


# ServiceGate's additions to Table E.1-1: free-text overlay attributes the table does not list, treated
# like Overlay Comments (60xx,4000), which it does (the Annex asks the de-identifier to remove all
# identifying information, and these are as free as the comments).
_ADDITIONS: dict[int, tuple[str, str]] = {0x0022: ("X", "C"), 0x1500: ("X", "C")}  # Overlay Description, Label


def addition_for(tag: BaseTag, profile: Profile) -> str | None:
    """The action for one of ServiceGate's additions to the table, or None."""
    if tag.group & 0xFF01 != 0x6000 or tag.element not in _ADDITIONS:
        return None
    basic, graphics = _ADDITIONS[tag.element]
    return graphics if Option.CLEAN_GRAPHICS in profile.options else basic


def resolve(code: str) -> str:
    """A combined code to the single action used here (see the module docstring): D, Z, or U*."""
    if "/" not in code:
        return code
    choices = code.rstrip("*").split("/")
    if code.endswith("*"):
        return "U*"
    return "D" if "D" in choices else "Z"


# ---- safety net, file meta, method attributes -----------------------------------------------------

def _safety_net(dataset: Dataset, values: IdentifyingValues, report: Report, profile: Profile) -> None:
    """Take the identifying content out of any element that still holds an identifying value, wherever it
    is: text is scrubbed, names become ANONYMOUS, UIDs are replaced like U, binary values are removed.
    The element itself stays where it can, so a Type 1 or 2 attribute (Manufacturer, say) keeps the file
    valid; `values.element_hits` decides what holds a value."""
    if not values:
        return
    doomed: list[tuple[Dataset, BaseTag, str]] = []

    def visit(ds: Dataset, path: str) -> None:
        encodings = encodings_of(ds)
        for elem in elements(ds):
            if elem.VR == "SQ":
                for index, item in enumerate(elem.value or []):
                    visit(item, f"{path}{elem.tag}[{index}]>")
            elif element_hits(elem, values, encodings) and not (ds is dataset and _is_pseudonym(ds[elem.tag])):
                doomed.append((ds, elem.tag, f"{path}{elem.tag}"))

    visit(dataset, "")
    for ds, tag, path in doomed:
        report.safety_net.append(path)
        elem = ds[tag]
        if elem.VR == "PN":
            elem.value = _DUMMY["PN"]
        elif elem.VR == "UI":
            elem.value = _map(elem.value, profile.pseudonymizer.uid)
        elif elem.VR in BINARY_VRS or (text := element_text(elem)) is None:
            del ds[tag]
        else:
            cleaned = _map(elem.value, lambda v: scrub(v, values)) if elem.VM > 1 else scrub(text, values)
            elem.value = cleaned
            if element_hits(elem, values):  # a short value that is the whole text: nothing of it can stay
                elem.value = PLACEHOLDER


def _is_pseudonym(elem: DataElement) -> bool:
    """The patient's keyed pseudonyms, which `deidentify` itself set: made of a fixed prefix and HMAC digits."""
    return elem.tag in (PATIENT_NAME, PATIENT_ID) and str(elem.value).startswith(("ANONYMOUS^", "SG-"))


def _drop_orphan_overlays(dataset: Dataset) -> None:
    """An overlay whose Overlay Data (60xx,3000) was removed is removed whole: its other attributes would
    describe a missing overlay (a Type 1 error in the Overlay Plane module)."""
    tags = dataset.keys()  # (iterating the Dataset itself would convert every element)
    overlays = [tag for tag in tags if 0x6000 <= tag.group < 0x6020 and tag.group % 2 == 0]
    for tag in overlays:
        if Tag(tag.group, 0x3000) not in dataset:
            del dataset[tag]


def _regenerate_file_meta(dataset: Dataset) -> None:
    """New file meta from the de-identified dataset; nothing of the original's is carried over."""
    old = getattr(dataset, "file_meta", None)
    if old is None and not isinstance(dataset, FileDataset):
        return
    meta = FileMetaDataset()
    if "SOPClassUID" in dataset and "SOPInstanceUID" in dataset:  # absent in a bare (non-composite) dataset
        meta.MediaStorageSOPClassUID = dataset.SOPClassUID
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    if old is not None and "TransferSyntaxUID" in old:
        meta.TransferSyntaxUID = old.TransferSyntaxUID
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    dataset.file_meta = meta
    if isinstance(dataset, FileDataset):
        dataset.preamble = b"\x00" * 128
        dataset.filename = None  # the original file name may contain the patient's name


def _add_method_attributes(dataset: Dataset, options: frozenset[Option]) -> None:
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = METHOD_TEXT
    codes = []
    for value, meaning in [BASIC_PROFILE_CODE, *sorted((o.code, o.meaning) for o in options)]:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    dataset.DeidentificationMethodCodeSequence = Sequence(codes)
    if Option.RETAIN_LONG_FULL_DATES in options:
        dataset.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif Option.RETAIN_LONG_MODIFIED_DATES in options:
        dataset.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        dataset.LongitudinalTemporalInformationModified = "REMOVED"


# ---- small helpers --------------------------------------------------------------------------------

# Ultrasound, visible light (endoscopy, photography, microscopy), screen and document captures.
_BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "XC", "ES", "GM", "SM", "OP", "DOC"})
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # SC; its multi-frame family is .7.1 to .7.4
_VISIBLE_LIGHT = "1.2.840.10008.5.1.4.1.1.77."  # VL endoscopic, microscopic, photographic, ...


def _is_secondary_capture(dataset: Dataset) -> bool:
    sop_class = str(dataset.get("SOPClassUID", ""))
    return sop_class == _SECONDARY_CAPTURE or sop_class.startswith(_SECONDARY_CAPTURE + ".")


def _commonly_burned_in(dataset: Dataset) -> bool:
    modality = str(dataset.get("Modality", "")).upper()
    sop_class = str(dataset.get("SOPClassUID", ""))
    return modality in _BURNED_IN_MODALITIES or _is_secondary_capture(dataset) or sop_class.startswith(_VISIBLE_LIGHT)


def _kind(dataset: Dataset) -> str:
    if _is_secondary_capture(dataset):
        return "secondary-capture"
    return str(dataset.get("Modality", "")).upper() or "such"


def _is_creator(tag: int) -> bool:
    t = BaseTag(tag)
    return t.is_private and 0x0010 <= t.element <= 0x00FF


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | MultiValue) else [value]


def _map(value: Any, fn: Any) -> Any:
    if isinstance(value, list | MultiValue):
        return [fn(str(v)) for v in value]
    return fn(str(value)) if value not in (None, "") else value
