"""A planted DICOM corpus: real CT files with identifying values hidden everywhere a de-identifier can miss them.

Every generator returns what it planted (`Planted`): the values, where each one sits, and what kind of value it
is (so a test running with Retain UIDs, say, knows which values may legitimately survive). A test de-identifies
the files and searches the output for every value, parsed (`find_values(dataset, ...)`) and as raw bytes
(`find_values(file_bytes, ...)`).

Why the values look the way they do: a hit must mean a leak, never a coincidence. Every value is at least four
characters and distinctive: rare mixed-case names (dummy names from the peers' lists are upper case and common),
prefixed IDs (`PID-`, `ACC`, `MRN`), full UIDs under pydicom's root; no value is a substring of another except a
person name's own groups and components, which are planted values too. Pixel values stay below 4096, so every other
pixel byte is 0x00-0x0F and no text can appear in them.

`where` is not written by hand: it is what `locate` finds in the finished dataset, so it cannot drift from the
content. The tests check it against an independent raw-byte search of the written file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmwrite
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset, PrivateBlock
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian
from pydicom.uid import UID as DicomUID

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root: corpus UIDs look real and belong to nobody
MIN_SEARCH_LEN = 4  # shorter name components ("Dr", "III", "きくお") are never searched as substrings
SAFE_PRIVATE = (0x7053, "Philips PET Private Group", ((0x00, "1.234"), (0x09, "0.0057")))  # PS3.15 Table E.3.10-1
ACME = "ACME 1.0"
AFTER_PIXELS_CREATOR = "GEMS_Ultrasound_MovieGroup_001"

# Kinds, named after the option that may retain them; NAME, ID, BIRTH_DATE, CONTACT and STAFF never survive.
NAME, ID, BIRTH_DATE, CONTACT, STAFF = "name", "id", "birth_date", "contact", "staff"
UID, DATE, INSTITUTION, DEVICE = "uid", "date", "institution", "device"

FAMILY_NAMES = (
    "Quixote", "Vandersloot", "Blennerhassett", "Featherstonehaugh", "Szczepanski", "Wolfeschlegel", "Przybylski",
    "Cholmondeley", "Okonkwo-Barrie", "Thistlewaite", "Zbyszewski", "Oyelaran", "Kowalczuk", "Marchbanks",
    "Quarrington", "Pennefather", "Ffoulkes", "Ashburnham", "Brackenridge", "Culpepper", "Dunwoody", "Ekwueme",
    "Fitzwarren", "Grimsditch", "Hollingworth", "Jaworowski", "Lightbody", "Mavrokordatos", "Nakagawara",
    "Oppenshaw", "Papadimitriou", "Quennell", "Rossendale", "Trevithick", "Uttenweiler", "Wetherspoon", "Xenakis",
    "Yarborough", "Zoutendijk", "Abercromby",
)
GIVEN_NAMES = (
    "Zebulon", "Thaddeus", "Evander", "Leocadia", "Perpetua", "Hieronymus", "Ottoline", "Wolfram", "Quintillus",
    "Bartholomea", "Cassiopeia", "Eustachius", "Florizel", "Griselda", "Hortensia", "Isambard", "Jacinthe",
    "Kunigunde", "Lysander", "Melisende", "Nepomuk", "Octavian", "Philomena", "Radegund", "Sigismund", "Theodosia",
    "Ulrika", "Valentinian", "Wilhelmina", "Xenophon", "Yevgenia", "Zenobia", "Aurelian", "Benedetta", "Cornelius",
    "Desdemona", "Ermengarde", "Fortunatus", "Gwendolen", "Hildegard",
)
IDEOGRAPHIC_FAMILY = (("勅使河原", "てしがわら"), ("長宗我部", "ちょうそかべ"), ("小比類巻", "こひるいまき"),
                      ("武者小路", "むしゃのこうじ"), ("五百旗頭", "いおきべ"))
IDEOGRAPHIC_GIVEN = (("龍之介", "りゅうのすけ"), ("宗一郎", "そういちろう"), ("喜久雄", "きくお"),
                     ("千代子", "ちよこ"), ("美智子", "みちこ"))
TOWNS = ("Ottershaw", "Quarrendon", "Llanfyllin", "Mossbank", "Wrangthorn", "Fenstanton", "Kirkbampton", "Cleobury")
STREETS = ("Gallowtree Gate", "Wheeldon Mews", "Thimbleby Row", "Cordwainer Close", "Pudding Chare", "Haxby Wynd")
# The hypothesis strategy's tokens: pairwise no substring of another (the tests check it).
WORDS = FAMILY_NAMES + GIVEN_NAMES + tuple(f for f, _ in IDEOGRAPHIC_FAMILY) + ("りゅうのすけ", "そういちろう")


@dataclass
class Planted:
    """What a generator planted: every identifying value, where it sits, and its kind (see the kind constants)."""

    values: set[str] = field(default_factory=set)
    where: dict[str, list[str]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)

    def except_kinds(self, *kinds: str) -> set[str]:
        """The values an option retaining `kinds` must still remove."""
        return {v for v in self.values if self.kinds.get(v) not in kinds}

    def merge(self, other: Planted, label: str) -> None:
        self.values |= other.values
        self.kinds.update(other.kinds)
        for value, places in other.where.items():
            self.where.setdefault(value, []).extend(f"{label}: {p}" for p in places)


@dataclass(frozen=True)
class PatientIdentity:
    """One patient, one study, one instance. Person names are DICOM PN strings."""

    family: str
    given: str
    middle: str
    prefix: str
    suffix: str
    ideographic: str  # "勅使河原^龍之介"
    phonetic: str  # "てしがわら^りゅうのすけ"
    patient_id: str
    other_ids: tuple[str, ...]
    birth_date: str
    accession: str
    institution: str
    referring: str
    performing: str
    operators: tuple[str, ...]
    study_uid: str
    series_uid: str
    sop_uid: str
    frame_uid: str

    @property
    def alphabetic(self) -> str:
        return f"{self.family}^{self.given}^{self.middle}^{self.prefix}^{self.suffix}"

    @property
    def patient_name(self) -> str:
        return f"{self.alphabetic}={self.ideographic}={self.phonetic}"

    @classmethod
    def from_seed(cls, seed: int) -> PatientIdentity:
        rng = random.Random(seed)
        family, *staff = rng.sample(FAMILY_NAMES, 5)
        given, middle, *staff_given = rng.sample(GIVEN_NAMES, 6)
        (k_family, p_family), (k_given, p_given) = rng.choice(IDEOGRAPHIC_FAMILY), rng.choice(IDEOGRAPHIC_GIVEN)
        return cls(
            family=family, given=given, middle=middle, prefix=rng.choice(("Dr", "Mr", "Ms", "Rev")),
            suffix=rng.choice(("III", "Jr", "Sr", "IV")), ideographic=f"{k_family}^{k_given}",
            phonetic=f"{p_family}^{p_given}", patient_id=f"PID-{rng.randrange(10**6, 10**7)}",
            other_ids=(f"MRN{rng.randrange(10**7, 10**8)}", f"NHS {rng.randrange(10**9, 10**10)}"),
            birth_date=_date(rng, 1930, 2005), accession=f"ACC{rng.randrange(10**5, 10**7)}",
            institution=f"{rng.choice(TOWNS)} Royal Infirmary", referring=f"{staff[0]}^{staff_given[0]}^^Dr",
            performing=f"{staff[1]}^{staff_given[1]}",
            operators=(f"{staff[2]}^{staff_given[2]}", f"{staff[3]}^{staff_given[3]}"),
            study_uid=_uid(rng), series_uid=_uid(rng), sop_uid=_uid(rng), frame_uid=_uid(rng),
        )


def _date(rng: random.Random, first_year: int, last_year: int) -> str:
    start, end = dt.date(first_year, 1, 1), dt.date(last_year, 12, 31)
    return (start + dt.timedelta(days=rng.randrange((end - start).days))).strftime("%Y%m%d")


def _uid(rng: random.Random) -> str:
    return f"{UID_ROOT}{rng.randrange(10**29, 10**30)}"  # 56 characters


def _even(data: bytes) -> bytes:
    return data + b"\0" * (len(data) % 2)


def _components(pn: str) -> list[str]:
    return [c for c in re.split(r"[\^=]", pn) if len(c) >= MIN_SEARCH_LEN and c != pn]


def _ct_skeleton(study: str, series: str, sop: str, frame: str, rows: int, columns: int) -> FileDataset:
    """A valid-looking CT Image Storage instance without any identity but its UIDs."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = DicomUID(sop)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "ACME Medical", "Tomograph 9"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 2, 1, 1
    ds.PatientPosition, ds.PositionReferenceIndicator = "HFS", ""
    ds.KVP, ds.SliceThickness, ds.PixelSpacing = "120", "1.0", ["0.7", "0.7"]
    ds.ImagePositionPatient, ds.ImageOrientationPatient = ["-100", "-100", "0"], ["1", "0", "0", "0", "1", "0"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    pixels = [(r * 7 + c * 13) % 4096 for r in range(rows) for c in range(columns)]  # < 4096: no text in pixel bytes
    ds.add_new(0x7FE00010, "OW", struct.pack(f"<{len(pixels)}H", *pixels))
    return ds


def _overlay(ds: Dataset, group: int, rows: int, columns: int, description: str, comments: str) -> None:
    base = group << 16
    ds.add_new(base | 0x0010, "US", rows)
    ds.add_new(base | 0x0011, "US", columns)
    ds.add_new(base | 0x0022, "LO", description)
    ds.add_new(base | 0x0040, "CS", "G")
    ds.add_new(base | 0x0050, "SS", [1, 1])
    ds.add_new(base | 0x0100, "US", 1)
    ds.add_new(base | 0x0102, "US", 0)
    bits = bytearray((rows * columns + 7) // 8)
    for i in range(0, len(bits), 3):  # a dotted rectangle: graphics, not text
        bits[i] = 0xFF
    ds.add_new(base | 0x3000, "OW", _even(bytes(bits)))
    ds.add_new(base | 0x4000, "LT", comments)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _content_item(value_type: str, code: Dataset, value: str) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType, item.ConceptNameCodeSequence = "CONTAINS", value_type, [code]
    if value_type == "PNAME":
        item.PersonName = value
    else:
        item.TextValue = value
    return item


def _signature(uid: str, when: str, certificate: str) -> Dataset:
    item = Dataset()
    item.MACIDNumber, item.DigitalSignatureUID, item.DigitalSignatureDateTime = 1, uid, when
    item.CertificateType = "X509_1993_SIG"
    item.CertificateOfSigner = _even(b"0\x82\x01\x0a" + certificate.encode())  # a DER-looking prefix, then text
    item.Signature = hashlib.sha512(certificate.encode()).digest()
    return item


def _implicit_element(group: int, element: int, text: str) -> bytes:
    value = text.encode() + b" " * (len(text.encode()) % 2)
    return struct.pack("<HHI", group, element, len(value)) + value


def _ref(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
    return item


def planted_dataset(
    seed: int = 0, *, patient: PatientIdentity | None = None, rows: int = 16, columns: int = 16,
) -> tuple[FileDataset, Planted]:
    """A CT instance with `patient` (default: drawn from `seed`) planted in every hard place of issue 3."""
    p = patient or PatientIdentity.from_seed(seed)
    rng = random.Random(f"extras:{seed}")  # everything that is not the patient's identity
    taken = p.patient_name + p.referring + p.performing + "".join(p.operators)
    pairs = zip(rng.sample(FAMILY_NAMES, len(FAMILY_NAMES)), rng.sample(GIVEN_NAMES, len(GIVEN_NAMES)), strict=True)
    staff = [(f, g) for f, g in pairs if f not in taken and g not in taken][:5]
    reading, requesting, observer = (f"{f}^{g}" for f, g in staff[:3])
    birth_name, mother = f"{staff[3][0]}^{p.given}", f"{staff[4][0]}^{staff[4][1]}"
    town, home = rng.sample(TOWNS, 2)
    address = f"{rng.randrange(2, 200)} {rng.choice(STREETS)}, {home}"
    institution_address = f"{rng.randrange(2, 200)} {rng.choice(STREETS)}, {town}"
    phone, issuer = f"+44 1632 {rng.randrange(960000, 961000)}", f"{town} Health Board"
    station, serial = f"{town[:8].upper()}-CT{rng.randrange(1, 10)}", f"SN{rng.randrange(10**7, 10**8)}"
    study_id, procedure_id, step_id = (f"{k}{rng.randrange(10**5, 10**6)}" for k in ("STU", "RP", "SPS"))
    study_date, localizer, localizer_series, source = _date(rng, 2015, 2024), _uid(rng), _uid(rng), _uid(rng)
    signature_uid = _uid(random.Random(f"signature:{p.sop_uid}"))
    spoken = f"{p.given} {p.family}"

    ds = _ct_skeleton(p.study_uid, p.series_uid, p.sop_uid, p.frame_uid, rows, columns)
    ds.preamble = f"{p.alphabetic} {p.patient_id}".encode()[:128].ljust(128, b"\0")
    ds.file_meta.SourceApplicationEntityTitle = station
    ds.file_meta.PrivateInformationCreatorUID = DicomUID(f"{UID_ROOT}7.1")
    ds.file_meta.PrivateInformation = _even(f"ACME-PRIV patient={p.patient_name} id={p.patient_id}".encode())
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime, ds.AcquisitionDateTime = "101512", f"{study_date}101512"
    ds.AccessionNumber, ds.StudyID, ds.InstitutionName = p.accession, study_id, p.institution
    ds.InstitutionAddress, ds.StationName, ds.DeviceSerialNumber = institution_address, station, serial
    ds.ReferringPhysicianName, ds.PerformingPhysicianName = p.referring, p.performing
    ds.OperatorsName = list(p.operators)
    ds.NameOfPhysiciansReadingStudy, ds.RequestingPhysician = reading, requesting
    ds.StudyDescription, ds.SeriesDescription = f"CT THORAX {p.family} FOLLOW-UP", "AXIAL 1.0 B30f"
    ds.ImageComments = f"Recalled {spoken} ({p.patient_id}) for a repeat scan; DOB {p.birth_date}, phone {phone}"
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = p.patient_name, p.patient_id, issuer
    ds.PatientBirthDate, ds.PatientSex = p.birth_date, rng.choice("FM")
    ds.OtherPatientIDs, ds.OtherPatientNames, ds.PatientBirthName = list(p.other_ids), [birth_name], birth_name
    ds.PatientMotherBirthName, ds.PatientAddress, ds.PatientTelephoneNumbers = mother, address, phone
    ds.AdditionalPatientHistory = f"Sister of {p.family}, {p.given}; known to the {p.institution} since {p.birth_date}"
    ds.PatientComments = f"Prefers to be called {p.given}. Lives at {address}. Name in kanji: {p.ideographic}"
    other = []
    for other_id in p.other_ids:
        item = Dataset()
        item.PatientID, item.IssuerOfPatientID, item.TypeOfPatientID = other_id, issuer, "TEXT"
        other.append(item)
    ds.OtherPatientIDsSequence = other
    # Original UIDs and the references to them.
    ds.ReferencedImageSequence = [_ref(CTImageStorage, localizer)]
    ds.SourceImageSequence = [_ref(CTImageStorage, source)]
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = localizer_series
    series_ref.ReferencedInstanceSequence = [_ref(CTImageStorage, localizer)]
    ds.ReferencedSeriesSequence = [series_ref]
    # Five sequence levels: Request Attributes > Referenced Study > private SQ > Referenced Patient > Other IDs.
    level5 = Dataset()
    level5.PatientID, level5.IssuerOfPatientID, level5.TypeOfPatientID = p.other_ids[-1], issuer, "TEXT"
    level5.private_block(0x0029, ACME, create=True).add_new(0x10, "LO", f"{p.family}^{p.given}")
    level4 = Dataset()
    level4.PatientName, level4.PatientBirthDate, level4.OtherPatientIDsSequence = p.patient_name, p.birth_date, [level5]
    level3 = Dataset()
    level3.PatientName, level3.PatientID, level3.ReferencedPatientSequence = p.alphabetic, p.patient_id, [level4]
    level2 = _ref("1.2.840.10008.3.1.2.3.1", p.study_uid)
    level2.private_block(0x0029, ACME, create=True).add_new(0x30, "SQ", Sequence([level3]))
    level1 = Dataset()
    level1.RequestedProcedureID, level1.ScheduledProcedureStepID = procedure_id, step_id
    level1.AccessionNumber = p.accession
    level1.RequestedProcedureDescription, level1.ReferencedStudySequence = f"CT chest {p.family}", [level2]
    ds.RequestAttributesSequence = [level1]
    # Private blocks: ACME holds identity in every text and binary VR and a private SQ of standard attributes.
    acme = ds.private_block(0x0029, ACME, create=True)
    acme.add_new(0x10, "LO", f"{p.family}^{p.given}")
    acme.add_new(0x11, "SH", p.patient_id)
    acme.add_new(0x12, "UT", f"Scan of {p.patient_name}, born {p.birth_date}, accession {p.accession}")
    acme.add_new(0x13, "OB", _even(b"\x01\x00\x02\x00" + f"{p.alphabetic}\0{p.other_ids[0]}".encode()))
    acme.add_new(0x14, "UN", _implicit_element(0x0010, 0x0010, p.alphabetic)
                 + _implicit_element(0x0010, 0x0020, p.patient_id))
    inner = Dataset()
    inner.PatientName, inner.PatientID, inner.PatientBirthDate = p.patient_name, p.patient_id, p.birth_date
    inner.StudyInstanceUID, inner.AccessionNumber, inner.InstitutionName = p.study_uid, p.accession, p.institution
    acme.add_new(0x20, "SQ", Sequence([inner]))
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    csa.add_new(0x10, "OB", _even(b"SV10\x04\x03\x02\x01" + f"PatientName\0{p.alphabetic}\0{p.phonetic}".encode()))
    group, creator, safe_values = SAFE_PRIVATE
    safe = ds.private_block(group, creator, create=True)
    for offset, value in safe_values:
        safe.add_new(offset, "DS", value)
    # SR-like content and its verifying observer.
    nested = _content_item("TEXT", _code("121106", "Comment"), f"{p.family} tolerated contrast well")
    nested.ContentSequence = [_content_item("PNAME", _code("121029", "Subject Name"), p.patient_name)]
    ds.ContentSequence = [
        _content_item("TEXT", _code("121106", "Comment"), f"Patient {spoken} ({p.patient_id}) reports chest pain"),
        _content_item("PNAME", _code("121008", "Person Observer Name"), observer),
        nested,
    ]
    verifier = Dataset()
    verifier.VerifyingObserverName, verifier.VerifyingOrganization = observer, p.institution
    verifier.VerificationDateTime, verifier.VerifyingObserverIdentificationCodeSequence = f"{study_date}120000", []
    ds.VerifyingObserverSequence = [verifier]
    _overlay(ds, 0x6000, rows, columns, f"Marker for {spoken}", f"By {p.operators[0]} for {p.family} {p.patient_id}")
    # After the pixel data: a private group, the Digital Signatures Sequence and trailing padding.
    ds.private_block(0x7FE1, AFTER_PIXELS_CREATOR, create=True).add_new(0x10, "LO", f"{p.patient_id} {p.family}")
    ds.DigitalSignaturesSequence = [
        _signature(signature_uid, f"{study_date}101600", f"CN={spoken}, O={p.institution}, UID={p.patient_id}")
    ]
    ds.DataSetTrailingPadding = _even(b"\0" * 16 + p.alphabetic.encode())

    kinds: dict[str, str] = {}
    for kind, values in (
        (NAME, [p.patient_name, p.alphabetic, p.ideographic, p.phonetic, birth_name, mother,
                *_components(p.patient_name), *_components(birth_name), *_components(mother)]),
        (STAFF, [n for person in (p.referring, p.performing, *p.operators, reading, requesting, observer)
                 for n in (person, *_components(person))]),
        (ID, [p.patient_id, *p.other_ids, p.accession, issuer, study_id, procedure_id, step_id]),
        (BIRTH_DATE, [p.birth_date]), (CONTACT, [address, phone]), (DATE, [study_date]),
        (INSTITUTION, [p.institution, institution_address]), (DEVICE, [station, serial]),
        (UID, [p.study_uid, p.series_uid, p.sop_uid, p.frame_uid, localizer, localizer_series, source, signature_uid]),
    ):
        kinds.update(dict.fromkeys(values, kind))
    return ds, _record(ds, kinds)


def _record(ds: Dataset, kinds: dict[str, str]) -> Planted:
    return Planted(values=set(kinds), where=locate(ds, kinds), kinds=dict(kinds))


def write_planted_file(
    path: Path, seed: int = 0, *, patient: PatientIdentity | None = None, rows: int = 16, columns: int = 16,
) -> Planted:
    """Write `planted_dataset(...)` as a DICOM file, preamble and file meta as planted."""
    ds, planted = planted_dataset(seed, patient=patient, rows=rows, columns=columns)
    dcmwrite(path, ds, enforce_file_format=True)
    return planted


def planted_series(directory: Path, n: int, seed: int = 0) -> tuple[list[Path], Planted]:
    """`n` instances of one patient's series: shared study/series UIDs, own SOP UIDs, InstanceNumber 1..n, each
    referencing the previous instance. File names carry the patient's name, as real exports do."""
    identity = PatientIdentity.from_seed(seed)
    rng = random.Random(f"series:{seed}")
    sop_uids = [_uid(rng) for _ in range(n)]
    paths: list[Path] = []
    planted = Planted()
    for number, sop in enumerate(sop_uids, start=1):
        ds, one = planted_dataset(seed, patient=replace(identity, sop_uid=sop))
        ds.InstanceNumber, ds.ImagePositionPatient = number, ["-100", "-100", str(number)]
        if number > 1:
            ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = sop_uids[number - 2]
        path = directory / f"{identity.family}_{identity.given}_{number:04d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        planted.merge(_record(ds, one.kinds | dict.fromkeys(sop_uids, UID)), path.name)
        for value in (identity.family, identity.given):
            planted.where[value].append(f"{path.name}: file name")
        paths.append(path)
    return paths, planted


def planted_studies(directory: Path, n_studies: int, seed: int = 0) -> tuple[list[Path], list[Planted]]:
    """One file per study, each of a different patient (names, IDs, UIDs all distinct)."""
    paths: list[Path] = []
    planted: list[Planted] = []
    used: set[str] = set()
    first = candidate = seed * 10_007
    while len(paths) < n_studies:
        if n_studies > len(GIVEN_NAMES) or candidate - first > 100 * (n_studies + 10):
            raise ValueError(f"cannot draw {n_studies} distinct patients from the name pools: ask for at most 40")
        identity = PatientIdentity.from_seed(candidate)
        candidate += 1
        own = {identity.family, identity.given, identity.patient_id, identity.accession}
        if own & used:
            continue
        used |= own
        path = directory / f"{identity.family}_{identity.given}.dcm"
        planted.append(write_planted_file(path, candidate - 1, patient=identity))
        paths.append(path)
    return paths, planted


# --- searching -----------------------------------------------------------------------------------------------


def _needles(value: str) -> list[str]:
    return [value, *_components(value)]


def _hit(haystack: str | bytes, needles: list[str], ignore_case: bool) -> bool:
    if isinstance(haystack, bytes):
        hay = haystack.lower() if ignore_case else haystack
        return any((n.lower() if ignore_case else n).encode() in hay for n in needles)
    hay_s = haystack.casefold() if ignore_case else haystack
    return any((n.casefold() if ignore_case else n) in hay_s for n in needles)


def _texts(value: object) -> Iterator[str | bytes]:
    if value is None:
        return
    if isinstance(value, bytes | bytearray):
        yield bytes(value)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple | MultiValue):
        for item in value:
            yield from _texts(item)
    else:
        yield str(value)  # PersonName gives all three groups; numbers their text


def _label(ds: Dataset, tag: BaseTag) -> str:
    if tag.is_private and tag.element >= 0x1000:
        creator = ds.get_item(Tag(tag.group, tag.element >> 8))
        name = creator.value if creator is not None else b"?"
        text = name.decode(errors="replace").strip() if isinstance(name, bytes) else str(name)
        return f"({tag.group:04X},xx{tag.element & 0xFF:02X}) {text!r}"
    return f"({tag.group:04X},{tag.element:04X})"


def _leaves(ds: Dataset, prefix: str) -> Iterator[tuple[str, str | bytes]]:
    """(path, searchable value) for every element at any depth; raw bytes too where not yet parsed."""
    for tag in list(ds.keys()):
        path = prefix + _label(ds, tag)
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
            yield path, raw.value  # also what a broken decode would hide
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a scanner reads damaged files too
            try:
                elem = ds[tag]
            except Exception:  # the raw bytes were searched above
                continue
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                yield from _leaves(item, f"{path}[{index}]>")
        else:
            for text in _texts(elem.value):
                yield path, text


def locate(data: bytes | Dataset, values: Iterable[str], *, ignore_case: bool = False) -> dict[str, list[str]]:
    """Where each value occurs: byte offsets in raw data; element paths (including file meta and preamble) in a
    dataset. A value counts as found when it, or one of its name components of 4+ characters, occurs."""
    wanted = {v: _needles(v) for v in values}
    found: dict[str, list[str]] = {}

    def note(place: str, hay: str | bytes) -> None:
        for value, needles in wanted.items():
            if _hit(hay, needles, ignore_case) and place not in found.setdefault(value, []):
                found[value].append(place)

    if isinstance(data, bytes | bytearray):
        raw = bytes(data).lower() if ignore_case else bytes(data)
        for value, needles in wanted.items():
            for needle in needles:
                offset = raw.find((needle.lower() if ignore_case else needle).encode())
                if offset >= 0:
                    found.setdefault(value, []).append(f"byte {offset}")
                    break
        return found
    preamble = getattr(data, "preamble", None)
    if isinstance(preamble, bytes):
        note("preamble", preamble)
    meta = getattr(data, "file_meta", None)
    for place, text in [*(_leaves(meta, "file_meta>") if isinstance(meta, Dataset) else []), *_leaves(data, "")]:
        note(place, text)
    return {v: places for v, places in found.items() if places}


def find_values(data: bytes | Dataset, values: Iterable[str], *, ignore_case: bool = False) -> set[str]:
    """The planted values that occur in `data` (raw file bytes, or a dataset searched recursively)."""
    return set(locate(data, values, ignore_case=ignore_case))


# --- random datasets (hypothesis) ----------------------------------------------------------------------------

_NEST_SEQUENCES = (0x00400275, 0x00081110, 0x00081120, 0x00081140, 0x00082112, 0x0040A730, 0x00101002, 0x00081032,
                   0x00081111, 0x0040A073)
# Standard attributes a value is planted in; the kind is the atom's own unless the attribute says otherwise.
_LEAF_ATTRIBUTES: dict[int, str | None] = {
    0x00100010: NAME, 0x00101001: NAME, 0x00101005: NAME, 0x00101060: NAME, 0x00102297: NAME, 0x0040A123: NAME,
    0x00080090: STAFF, 0x00081050: STAFF, 0x00081070: STAFF, 0x00081060: STAFF, 0x00321032: STAFF, 0x0040A075: STAFF,
    0x00100020: ID, 0x00101000: ID, 0x00080050: ID, 0x00200010: ID, 0x00401001: ID, 0x00100030: BIRTH_DATE,
    0x00081155: UID, 0x0020000D: UID, 0x0020000E: UID, 0x00200052: UID, 0x00080080: INSTITUTION,
    0x00080081: INSTITUTION, 0x00081010: DEVICE, 0x00101040: CONTACT, 0x00204000: None, 0x001021B0: None,
    0x00104000: None, 0x00082111: None, 0x0040A160: None, 0x00081030: None, 0x00321060: None,
}
_PRIVATE_VRS = ("LO", "SH", "LT", "ST", "UT", "PN", "OB", "UN")
_CREATORS = ("ACME 1.0", "ACME IMAGING 2", "GLOBEX_CT_01", "INITECH MR HEADER", "UMBRELLA RECON", "VANDELAY_SCAN_3",
             "HOOLI PACS 7", "WAYNE MED 1.1")
_TEMPLATES = ("{}", "Seen with {} today", "history: {}; see notes", "Ref {} (verified)")
_NATURAL_KIND = {"word": NAME, "pn": NAME, "id": ID, "date": BIRTH_DATE, "uid": UID}
_LIMITS = {"SH": 16, "AE": 16, "LO": 64, "PN": 64}
_FORMS = {"SH": ("word", "id", "date"), "PN": ("pn", "word", "id"), "DA": ("date",), "UI": ("uid",)}
_TOP_SITES = ("file_meta", "preamble", "overlay", "signature", "trailing", "after_pixels", "sr", "other_ids", "leaves")


class _Atoms:
    """Unique values for one dataset: each distinct and none a substring of another (see the module docstring)."""

    def __init__(self, draw: DrawFn) -> None:
        from hypothesis import strategies as st

        self._draw, self._st = draw, st
        self._words = list(draw(st.permutations(WORDS)))
        self._number = draw(st.integers(0, 8_999_999))
        self._day0 = draw(st.dates(dt.date(1920, 1, 1), dt.date(1960, 12, 31)))
        self._serial = 0
        self.kinds: dict[str, str] = {}

    def _word(self, limit: int, ascii_only: bool) -> str | None:
        for word in self._words:
            if len(word) <= limit and (word.isascii() or not ascii_only):
                self._words.remove(word)
                return word
        return None

    def new(self, form: str, kind: str | None = None, limit: int = 64, ascii_only: bool = False) -> str:
        self._serial += 1
        value: str | None = None
        if form == "word":
            value = self._word(limit, ascii_only)
        elif form == "pn":
            first, second = self._word(31, ascii_only), self._word(31, ascii_only)
            value = f"{first}^{second}" if first and second and len(first) + len(second) < limit else None
        elif form == "date":
            value = (self._day0 + dt.timedelta(days=53 * self._serial)).strftime("%Y%m%d")
        elif form == "uid":
            value = f"{UID_ROOT}{self._serial}.{self._draw(self._st.integers(0, 10**20))}"
        if value is None:  # "id", or the words ran out
            prefix = self._draw(self._st.sampled_from(("PID-", "MRN", "ACC")))
            value, form = f"{prefix}{(self._number + self._serial * 7919) % 9_000_000 + 1_000_000}", "id"
        self.kinds[value] = kind or _NATURAL_KIND[form]
        return value

    def text(self, vr: str, kind: str | None = None) -> str:
        """A value for an element of `vr`: a new or an already planted atom, alone or inside a sentence."""
        limit = _LIMITS.get(vr, 1024)
        reusable = sorted(v for v in self.kinds if len(v) <= limit and (v.isascii() or vr != "AE"))
        if vr not in ("DA", "UI") and reusable and self._draw(self._st.booleans()):
            atom = self._draw(self._st.sampled_from(reusable))
        else:
            forms = _FORMS.get(vr, ("id",) if vr == "AE" else ("word", "pn", "id", "date", "uid"))
            atom = self.new(self._draw(self._st.sampled_from(forms)), kind, limit, vr == "AE")
        sentence = self._draw(self._st.sampled_from(_TEMPLATES)).format(atom)
        return sentence if len(sentence) <= limit and vr not in ("PN", "DA", "UI", "AE") else atom


def _private_slot(draw: DrawFn, target: Dataset, first_group: int = 0x0009) -> tuple[PrivateBlock, int]:
    from hypothesis import strategies as st

    group = draw(st.integers(first_group // 2, 0x3FFF)) * 2 + 1  # odd, 0x0009..0x7FFF
    block = target.private_block(group, draw(st.sampled_from(_CREATORS)), create=True)
    start = draw(st.integers(0, 0xFF))
    for step in range(0x100):
        if block.get_tag((start + step) % 0x100) not in target:
            return block, (start + step) % 0x100
    raise RuntimeError(f"private block {group:04X} is full")  # 256 planted values in one block: never drawn


def _plant_private(draw: DrawFn, atoms: _Atoms, target: Dataset, first_group: int = 0x0009) -> None:
    from hypothesis import strategies as st

    block, offset = _private_slot(draw, target, first_group)
    vr = draw(st.sampled_from(_PRIVATE_VRS))
    text = atoms.text(vr)
    block.add_new(offset, vr, _even(b"\x01\x00" + text.encode()) if vr in ("OB", "UN") else text)


def _plant_leaf(draw: DrawFn, atoms: _Atoms, target: Dataset) -> None:
    from hypothesis import strategies as st

    free = [tag for tag in _LEAF_ATTRIBUTES if tag not in target]
    if not free or draw(st.booleans()):
        _plant_private(draw, atoms, target)
        return
    tag = draw(st.sampled_from(free))
    vr = dictionary_VR(tag)
    target.add_new(tag, vr, atoms.text(vr, _LEAF_ATTRIBUTES[tag]))


def _descend(draw: DrawFn, target: Dataset) -> Dataset:
    from hypothesis import strategies as st

    item = Dataset()
    if draw(st.booleans()):
        block, offset = _private_slot(draw, target)
        block.add_new(offset, "SQ", Sequence([item]))
    else:
        tag = draw(st.sampled_from(_NEST_SEQUENCES))
        if tag in target:
            target[tag].value.append(item)
        else:
            target.add_new(tag, "SQ", Sequence([item]))
    return item


def _plant_site(draw: DrawFn, atoms: _Atoms, ds: FileDataset, site: str) -> None:
    from hypothesis import strategies as st

    if site == "file_meta":
        ds.file_meta.SourceApplicationEntityTitle = atoms.text("AE")
        ds.file_meta.PrivateInformationCreatorUID = DicomUID(f"{UID_ROOT}7.1")
        ds.file_meta.PrivateInformation = _even(f"patient={atoms.text('LT')}".encode())
    elif site == "preamble":
        text = atoms.text("LO").encode()
        at = draw(st.integers(0, 128 - len(text)))
        ds.preamble = (b"\0" * at + text).ljust(128, b"\0")
    elif site == "overlay":
        group = 0x6000 + 2 * draw(st.integers(0, 15))
        _overlay(ds, group, ds.Rows, ds.Columns, atoms.text("LO"), atoms.text("LT"))
    elif site == "signature":
        ds.DigitalSignaturesSequence = [_signature(atoms.new("uid"), "20200101120000", f"CN={atoms.text('LT')}")]
    elif site == "trailing":
        ds.DataSetTrailingPadding = _even(b"\0" * draw(st.integers(0, 64)) + atoms.text("LT").encode())
    elif site == "after_pixels":
        _plant_private(draw, atoms, ds, first_group=0x7FE1)
    elif site == "sr":
        nested = _content_item("TEXT", _code("121106", "Comment"), atoms.text("UT"))
        nested.ContentSequence = [_content_item("PNAME", _code("121029", "Subject Name"), atoms.text("PN", NAME))]
        ds.ContentSequence = [_content_item("PNAME", _code("121008", "Person Observer Name"), atoms.text("PN", STAFF)),
                              nested]
    elif site == "other_ids":
        items = []
        for _ in range(draw(st.integers(1, 3))):
            item = Dataset()
            item.PatientID, item.TypeOfPatientID = atoms.text("LO", ID), "TEXT"
            items.append(item)
        ds.OtherPatientIDsSequence = items
    else:
        for _ in range(draw(st.integers(1, 4))):
            _plant_leaf(draw, atoms, ds)


def datasets_strategy() -> SearchStrategy[tuple[FileDataset, Planted]]:
    """Random writable CT datasets with values planted in a random subset of the hard places, in random private
    blocks (odd groups 0x0009-0x7FFF, random creators, random text VRs) and at a random depth of 1 to 6 sequence
    levels. Patient's Name, Patient ID, Birth Date and the instance UIDs are always there, as in any real file."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: DrawFn) -> tuple[FileDataset, Planted]:
        atoms = _Atoms(draw)
        size = draw(st.sampled_from((8, 16, 24)))
        study, series, sop, frame = (atoms.new("uid") for _ in range(4))
        ds = _ct_skeleton(study, series, sop, frame, size, size)
        ds.PatientName, ds.PatientID = atoms.new("pn"), atoms.new("id")
        ds.PatientBirthDate = atoms.new("date")
        for site in sorted(draw(st.sets(st.sampled_from(_TOP_SITES)))):
            _plant_site(draw, atoms, ds, site)
        deepest = draw(st.integers(1, 6))
        for depth in [deepest, *draw(st.lists(st.integers(1, deepest), max_size=2))]:
            target: Dataset = ds
            for _ in range(depth):
                target = _descend(draw, target)
                if draw(st.booleans()):
                    _plant_leaf(draw, atoms, target)
            _plant_leaf(draw, atoms, target)
        return ds, _record(ds, atoms.kinds)

    return build()
