"""The planted corpus is real: its files are valid-looking DICOM, every planted value can be found in them (parsed
and as bytes), every hard place of issue 3 is really there, and `where` names every place a value sits."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from tests.dicom_corpus import (
    ACME,
    AFTER_PIXELS_CREATOR,
    MIN_SEARCH_LEN,
    SAFE_PRIVATE,
    UID_ROOT,
    WORDS,
    PatientIdentity,
    Planted,
    datasets_strategy,
    find_values,
    locate,
    planted_dataset,
    planted_series,
    planted_studies,
    write_planted_file,
)

PIXEL_DATA_TAG_BYTES = b"\xe0\x7f\x10\x00OW"  # (7FE0,0010) OW, explicit VR little endian


def _written(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _strip_every_hit(ds: Dataset, values: set[str]) -> bytes:
    """Delete every element (at any depth, file meta too) in which the dataset search finds a value, zero the
    preamble, and write what is left. If the raw bytes still hold a value, the dataset search missed a place."""

    def strip(dataset: Dataset, elem: DataElement) -> None:
        probe = Dataset()
        probe[elem.tag] = elem
        if elem.VR != "SQ" and find_values(probe, values):
            del dataset[elem.tag]

    ds.walk(strip)
    ds.file_meta.walk(strip)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.preamble = b"\0" * 128
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


# --- the values -------------------------------------------------------------------------------------------------


def test_word_pool_is_distinctive() -> None:
    assert len(set(WORDS)) == len(WORDS)
    for word in WORDS:
        assert len(word) >= MIN_SEARCH_LEN
        if word.isascii():  # mixed case: an upper-case dummy name ("DOE^JOHN") never matches by chance
            assert word != word.upper()
        others = [other for other in WORDS if other != word and word.casefold() in other.casefold()]
        assert not others, f"{word!r} is inside {others}"


@pytest.mark.parametrize("seed", range(12))
def test_planted_values_are_long_and_never_inside_each_other(seed: int) -> None:
    _, planted = planted_dataset(seed)
    assert planted.values == set(planted.kinds) == set(planted.where)
    for value in planted.values:
        assert len(value) >= MIN_SEARCH_LEN
        for other in planted.values - {value}:
            if value in other:  # only a person name contains another value: its own groups and components
                assert value in re.split(r"[\^=]", other) or value in other.split("="), (value, other)


def test_identity_is_deterministic_and_differs_by_seed() -> None:
    assert PatientIdentity.from_seed(5) == PatientIdentity.from_seed(5)
    assert PatientIdentity.from_seed(5).patient_id != PatientIdentity.from_seed(6).patient_id
    assert planted_dataset(3)[1] == planted_dataset(3)[1]


# --- every planted value is really there ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 7, 42])
def test_every_planted_value_is_found_in_the_file_bytes_and_the_parsed_file(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "planted.dcm"
    planted = write_planted_file(path, seed)
    raw = path.read_bytes()
    assert find_values(raw, planted.values) == planted.values
    parsed = dcmread(path)
    assert find_values(parsed, planted.values) == planted.values
    assert set(locate(parsed, planted.values)) == set(planted.where)


@pytest.mark.parametrize("seed", [0, 3])
def test_where_names_every_place_a_value_sits(seed: int) -> None:
    ds, planted = planted_dataset(seed)
    parsed = dcmread(io.BytesIO(_written(ds)))
    assert find_values(_strip_every_hit(parsed, planted.values), planted.values) == set()


def test_find_values_finds_nothing_in_foreign_data() -> None:
    _, planted = planted_dataset(0)
    ct_small = get_testdata_file("CT_small.dcm", download=False)
    assert ct_small is not None
    assert find_values(dcmread(ct_small), planted.values) == set()
    assert find_values(Path(ct_small).read_bytes(), planted.values) == set()
    assert find_values(Dataset(), planted.values) == set()


def test_find_values_searches_name_components_but_not_short_ones() -> None:
    assert find_values(b"\x00Quixote\x00", ["Quixote^Zebulon^^Dr"]) == {"Quixote^Zebulon^^Dr"}
    assert find_values(b"Dr Li", ["Li^Zebulon^^Dr"]) == set()
    assert find_values("勅使河原".encode(), ["Quixote=勅使河原^龍之介"]) == {"Quixote=勅使河原^龍之介"}
    assert find_values(b"QUIXOTE", ["Quixote"]) == set()
    assert find_values(b"QUIXOTE", ["Quixote"], ignore_case=True) == {"Quixote"}
    ds = Dataset()
    ds.PatientComments = "see QUIXOTE"
    assert find_values(ds, ["Quixote"], ignore_case=True) == {"Quixote"}
    assert locate(ds, ["Quixote"], ignore_case=True) == {"Quixote": ["(0010,4000)"]}


# --- every hard place is there ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written() -> tuple[bytes, FileDataset, Planted]:
    ds, planted = planted_dataset(0)
    raw = _written(ds)
    return raw, dcmread(io.BytesIO(raw)), planted


def _holds(planted: Planted, value: object) -> bool:
    return bool(find_values(value if isinstance(value, bytes) else str(value).encode(), planted.values))


def test_it_is_a_valid_looking_ct_image(written: tuple[bytes, FileDataset, Planted]) -> None:
    raw, ds, _ = written
    assert raw[128:132] == b"DICM"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == CTImageStorage
    assert ds.file_meta.ImplementationClassUID
    assert ds.Modality == "CT"
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit,
            ds.PixelRepresentation) == (1, "MONOCHROME2", 16, 12, 11, 0)
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID):
        assert uid.is_valid
        assert uid.startswith(UID_ROOT)


def test_patient_name_has_five_components_and_three_groups_in_utf8(
    written: tuple[bytes, FileDataset, Planted],
) -> None:
    raw, ds, planted = written
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    alphabetic, ideographic, phonetic = ds.PatientName.components
    assert len(alphabetic.split("^")) == 5
    assert all(alphabetic.split("^"))
    assert ideographic in planted.values
    assert phonetic in planted.values
    assert str(ds.PatientName).encode("utf-8") in raw


def test_patient_and_staff_attributes_hold_planted_values(written: tuple[bytes, FileDataset, Planted]) -> None:
    _, ds, planted = written
    for keyword in ("PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames",
                    "PatientBirthDate", "PatientAddress", "PatientComments", "PatientTelephoneNumbers",
                    "PatientMotherBirthName", "AccessionNumber", "ReferringPhysicianName", "PerformingPhysicianName",
                    "OperatorsName", "NameOfPhysiciansReadingStudy", "RequestingPhysician", "InstitutionName",
                    "InstitutionAddress", "StationName", "ImageComments", "StudyDescription",
                    "AdditionalPatientHistory", "StudyDate"):
        assert _holds(planted, ds[keyword].value), keyword
    assert len(ds.OperatorsName) == 2
    assert ds.PatientName.family_name in ds.StudyDescription
    assert len(ds.OtherPatientIDsSequence) == 2
    assert all(item.PatientID in planted.values for item in ds.OtherPatientIDsSequence)


def test_original_uids_are_referenced_in_sequences(written: tuple[bytes, FileDataset, Planted]) -> None:
    _, ds, planted = written
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID):
        assert planted.kinds[uid] == "uid"
    references = [
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID,
        ds.SourceImageSequence[0].ReferencedSOPInstanceUID,
        ds.ReferencedSeriesSequence[0].SeriesInstanceUID,
        ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID,
        ds.RequestAttributesSequence[0].ReferencedStudySequence[0].ReferencedSOPInstanceUID,
    ]
    assert all(uid in planted.values for uid in references)
    assert references[-1] == ds.StudyInstanceUID
    assert ds.DigitalSignaturesSequence[0].DigitalSignatureUID in planted.values


def test_values_sit_five_sequence_levels_deep_through_a_private_sequence(
    written: tuple[bytes, FileDataset, Planted],
) -> None:
    _, ds, planted = written
    family = ds.PatientName.family_name
    deep = [place for place in planted.where[family] if place.count("[") >= 4]
    assert deep
    assert all(f"'{ACME}'[" in place for place in deep)
    assert max(place.count("[") for places in planted.where.values() for place in places) == 5
    level3 = ds.RequestAttributesSequence[0].ReferencedStudySequence[0].private_block(0x0029, ACME)[0x30].value[0]
    assert level3.ReferencedPatientSequence[0].OtherPatientIDsSequence[0].PatientID in planted.values


def test_private_blocks_hold_identity_in_every_vr_and_a_private_sequence(
    written: tuple[bytes, FileDataset, Planted],
) -> None:
    _, ds, planted = written
    acme = ds.private_block(0x0029, ACME)
    vrs = {acme[offset].VR for offset in range(0x10, 0x21) if acme.get_tag(offset) in ds}
    assert vrs == {"LO", "SH", "UT", "OB", "UN", "SQ"}
    for offset in (0x10, 0x11, 0x12, 0x13, 0x14):
        assert _holds(planted, acme[offset].value)
    inner = acme[0x20].value[0]
    assert inner.PatientName == ds.PatientName
    assert inner.PatientID in planted.values
    assert _holds(planted, ds.private_block(0x0029, "SIEMENS CSA HEADER")[0x10].value)


def test_safe_private_block_is_there_and_holds_no_identity(written: tuple[bytes, FileDataset, Planted]) -> None:
    _, ds, planted = written
    group, creator, values = SAFE_PRIVATE
    safe = ds.private_block(group, creator)
    assert [(offset, str(safe[offset].value)) for offset, _ in values] == list(values)
    assert not [place for places in planted.where.values() for place in places if place.startswith(f"({group:04X}")]


def test_sr_content_and_verifying_observer_name_people(written: tuple[bytes, FileDataset, Planted]) -> None:
    _, ds, planted = written
    items = ds.ContentSequence
    assert {item.ValueType for item in items} == {"TEXT", "PNAME"}
    assert _holds(planted, items[0].TextValue)
    assert str(items[1].PersonName) in planted.values
    assert items[2].ContentSequence[0].PersonName == ds.PatientName
    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName) in planted.values


def test_overlay_carries_the_name_in_its_description_and_comments(
    written: tuple[bytes, FileDataset, Planted],
) -> None:
    _, ds, planted = written
    family = ds.PatientName.family_name
    assert len(ds[0x60003000].value) >= ds[0x60000010].value * ds[0x60000011].value // 8
    assert not _holds(planted, ds[0x60003000].value)  # the bitmap is graphics
    assert family in ds[0x60000022].value
    assert family in ds[0x60004000].value


def test_file_meta_and_preamble_carry_identity(written: tuple[bytes, FileDataset, Planted]) -> None:
    raw, ds, planted = written
    assert ds.file_meta.SourceApplicationEntityTitle in planted.values
    assert ds.file_meta.PrivateInformationCreatorUID
    assert ds.PatientID.encode() in ds.file_meta.PrivateInformation
    assert ds.PatientName.family_name.encode() in raw[:128]
    assert ds.PatientID.encode() in raw[:128]
    assert "preamble" in planted.where[ds.PatientID]


def test_elements_after_the_pixel_data_carry_identity(written: tuple[bytes, FileDataset, Planted]) -> None:
    raw, ds, planted = written
    pixels = raw.index(PIXEL_DATA_TAG_BYTES)
    family = ds.PatientName.family_name.encode()
    assert raw.rindex(family) > pixels
    for tag_bytes in (b"\xe1\x7f\x10\x00", b"\xe1\x7f\x10\x10", b"\xfa\xff\xfa\xff", b"\xfc\xff\xfc\xff"):
        assert raw.index(tag_bytes) > pixels
    assert [elem.tag for elem in ds if elem.tag > 0x7FE00010] == [0x7FE10010, 0x7FE11010, 0xFFFAFFFA, 0xFFFCFFFC]
    assert ds[0x7FE10010].value == AFTER_PIXELS_CREATOR
    assert _holds(planted, ds[0x7FE11010].value)
    assert family in ds.DigitalSignaturesSequence[0].CertificateOfSigner
    assert family in ds.DataSetTrailingPadding


# --- series and studies -----------------------------------------------------------------------------------------


def test_planted_series_shares_study_and_series_and_chains_references(tmp_path: Path) -> None:
    paths, planted = planted_series(tmp_path, 4, seed=9)
    files = [dcmread(path) for path in paths]
    assert {(f.StudyInstanceUID, f.SeriesInstanceUID, f.FrameOfReferenceUID) for f in files} == {
        (files[0].StudyInstanceUID, files[0].SeriesInstanceUID, files[0].FrameOfReferenceUID)}
    sops = [f.SOPInstanceUID for f in files]
    assert len(set(sops)) == 4
    assert set(sops) <= planted.values
    assert [f.InstanceNumber for f in files] == [1, 2, 3, 4]
    assert [f.file_meta.MediaStorageSOPInstanceUID for f in files] == sops
    assert [f.ReferencedImageSequence[0].ReferencedSOPInstanceUID for f in files[1:]] == sops[:-1]
    assert len({str(f.PatientName) for f in files}) == 1
    assert all(files[0].PatientName.family_name in path.name for path in paths)
    found = set().union(*(find_values(path.read_bytes(), planted.values) for path in paths))
    assert found == planted.values
    assert f"{paths[2].name}: (0008,0018)" in planted.where[sops[2]]


def test_planted_studies_are_distinct_patients(tmp_path: Path) -> None:
    paths, planted = planted_studies(tmp_path, 5, seed=1)
    files = [dcmread(path) for path in paths]
    for attribute in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID", "AccessionNumber"):
        assert len({str(f[attribute].value) for f in files}) == 5, attribute
    assert len({f.PatientName.family_name for f in files}) == 5
    for path, one in zip(paths, planted, strict=True):
        assert find_values(path.read_bytes(), one.values) == one.values


# --- random datasets --------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(datasets_strategy())
def test_random_datasets_are_writable_and_every_value_is_findable(pair: tuple[FileDataset, Planted]) -> None:
    ds, planted = pair
    assert planted.values
    assert planted.values == set(planted.where) == set(planted.kinds)
    assert all(len(value) >= MIN_SEARCH_LEN for value in planted.values)
    raw = _written(ds)
    assert find_values(raw, planted.values) == planted.values
    parsed = dcmread(io.BytesIO(raw))
    assert find_values(parsed, planted.values) == planted.values
    assert max(place.count("[") for places in planted.where.values() for place in places) >= 1
    assert find_values(_strip_every_hit(parsed, planted.values), planted.values) == set()
