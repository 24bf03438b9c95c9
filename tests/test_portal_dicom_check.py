"""portal.dicom_check on real files: what the anonymizer writes passes; the original, and a de-identified file
with one planted problem, fail with exactly that problem, named by tag and keyword and never quoting a value;
files that are not DICOM, cut short or damaged give one problem and no exception."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset
from pydicom.uid import UID

from anonymizer.batch import run_batch
from anonymizer.profile import Option
from portal.dicom_check import check_file
from tests.dicom_corpus import Planted, datasets_strategy, find_values, write_planted_file

Change = Callable[[FileDataset], None]
NAME = "Featherstonehaugh^Hieronymus"  # a name of the corpus's pools: rare, and never a dummy
REPLACED = "is neither empty nor a dummy value: the profile replaces it"
NOT_KEYED = "is not a UID in the 2.25 arc: the profile replaces it"
# pydicom's test files of several modalities and encodings; each is accepted by the anonymizer.
CORPUS = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "rtplan.dcm",
          "rtdose.dcm", "test-SR.dcm", "reportsi.dcm", "waveform_ecg.dcm", "liver_1frame.dcm", "examples_overlay.dcm"]


def deidentify(src: Path, tmp_path: Path, options: frozenset[Option] = frozenset()) -> Path:
    """`src` through the anonymizer's batch, with a site key of its own in tmp_path; the output file."""
    report = run_batch([src], tmp_path / "out", options=options, key_file=tmp_path / "site.key",
                       quarantine_dir=tmp_path / "quarantine")
    [result] = report.results
    assert result.status == "accepted", result.reason
    assert result.output is not None
    return result.output


def planted(tmp_path: Path, seed: int = 0) -> tuple[Path, Planted]:
    src = tmp_path / "in" / "planted.dcm"
    src.parent.mkdir(exist_ok=True)
    return src, write_planted_file(src, seed)


def changed(path: Path, tmp_path: Path, change: Change) -> Path:
    """A copy of the DICOM file `path` with `change` made to it, written as a DICOM file again."""
    ds = pydicom.dcmread(path)
    change(ds)
    out = tmp_path / "changed.dcm"
    ds.save_as(out)  # preamble and file meta as read: enforce_file_format would align the meta's UIDs with the data set
    return out


def assert_quotes_nothing(problems: list[str], values: set[str]) -> None:
    assert find_values("\n".join(problems).encode(), values, ignore_case=True) == set()


@pytest.fixture
def clean(tmp_path: Path) -> tuple[Path, Planted]:
    """The planted corpus file, de-identified by the anonymizer (Basic Profile), and what was planted in it."""
    src, values = planted(tmp_path)
    return deidentify(src, tmp_path), values


# ---- positive controls ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_a_planted_file_the_anonymizer_deidentified_passes(tmp_path: Path, seed: int) -> None:
    src, values = planted(tmp_path, seed)
    out = deidentify(src, tmp_path)
    assert check_file(out) == []
    assert find_values(out.read_bytes(), values.values) == set()  # the control is what it claims to be


@pytest.mark.parametrize("name", CORPUS)
def test_files_of_other_modalities_the_anonymizer_deidentified_pass(tmp_path: Path, name: str) -> None:
    src = Path(get_testdata_file(name, download=False) or "")
    out = deidentify(src, tmp_path)
    assert check_file(out) == []
    assert "PatientName" in pydicom.dcmread(src)  # and the original did name a patient:
    assert "(0010,0010) PatientName " + REPLACED in check_file(src)


def test_the_corpus_covers_several_modalities() -> None:
    modalities = {pydicom.dcmread(get_testdata_file(n, download=False) or "").Modality for n in CORPUS}
    assert modalities == {"CT", "MR", "RTPLAN", "RTDOSE", "SR", "ECG", "SEG"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=datasets_strategy())
def test_random_planted_datasets_pass_once_deidentified_and_fail_before(case: tuple[FileDataset, Planted]) -> None:
    original, values = case
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        src = tmp / "in.dcm"
        pydicom.dcmwrite(src, original, enforce_file_format=True)
        before = check_file(src)
        assert "(0012,0062) PatientIdentityRemoved is missing" in before
        assert_quotes_nothing(before, values.values)
        assert check_file(deidentify(src, tmp)) == []


def test_a_safe_private_attribute_kept_by_the_anonymizer_passes(tmp_path: Path) -> None:
    src, _ = planted(tmp_path)
    out = deidentify(src, tmp_path, frozenset({Option.RETAIN_SAFE_PRIVATE}))
    ds = pydicom.dcmread(out)
    assert [str(e.tag) for e in ds if e.tag.is_private] == ["(7053,0010)", "(7053,1000)", "(7053,1009)"]
    assert check_file(out) == []


def test_a_safe_private_attribute_added_to_a_clean_file_passes(tmp_path: Path,
                                                                clean: tuple[Path, Planted]) -> None:
    out, _ = clean

    def add(ds: FileDataset) -> None:  # PS3.15 Table E.3.10-1: (0019,xx0C) of SIEMENS MR HEADER, B-value
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", "1000")

    assert check_file(changed(out, tmp_path, add)) == []


# ---- the original -----------------------------------------------------------------------------------

def test_the_original_fails_naming_what_identifies_it_and_quoting_none_of_it(tmp_path: Path) -> None:
    src, values = planted(tmp_path)
    problems = check_file(src)
    assert {
        "(0012,0062) PatientIdentityRemoved is missing",
        f"(0010,0010) PatientName {REPLACED}",
        f"(0010,0020) PatientID {REPLACED}",
        f"(0010,0030) PatientBirthDate {REPLACED}",
        "(0010,1040) PatientAddress is not empty: the profile removes it",
        "(0040,0275) RequestAttributesSequence is not empty: the profile removes it",
        f"(0002,0003) MediaStorageSOPInstanceUID {NOT_KEYED}",
        f"(0008,0018) SOPInstanceUID {NOT_KEYED}",
        f"(0008,1155) ReferencedSOPInstanceUID in (0008,1140) ReferencedImageSequence item 1 {NOT_KEYED}",
        f"(0040,A123) PersonName in (0040,A730) ContentSequence item 1 in (0040,A730) ContentSequence item 3 "
        f"{REPLACED}",
        "(0029,1010) private attribute is not on the safe private list",
        "(7FE1,1010) private attribute is not on the safe private list",
        "(FFFC,FFFC) DataSetTrailingPadding is not empty: the profile removes it",
    } <= set(problems)
    assert not [p for p in problems if p.startswith(("(7053,", "(0029,0010)"))]  # safe block; creators not blamed
    assert len(problems) == len(set(problems))
    assert_quotes_nothing(problems, values.values)


# ---- one planted problem each -------------------------------------------------------------------------

def _set(keyword: str, value: object, item: Callable[[Dataset], Dataset] = lambda ds: ds) -> Change:
    return lambda ds: setattr(item(ds), keyword, value)


def _private(group: int, creator: str, offset: int, value: str) -> Change:
    return lambda ds: ds.private_block(group, creator, create=True).add_new(offset, "LO", value)


def _invalid_uid(keyword: str, value: str) -> Change:
    def change(ds: FileDataset) -> None:
        with pytest.warns(UserWarning, match="Invalid value for VR UI"):  # pydicom says so, and writes it anyway
            setattr(ds, keyword, value)

    return change


def _orphan_creator(ds: FileDataset) -> None:
    ds.add_new(0x00290010, "LO", "ACME 1.0")


ONE_PROBLEM: dict[str, tuple[Change, str]] = {
    "identity removed deleted": (lambda ds: delattr(ds, "PatientIdentityRemoved"),
                                 "(0012,0062) PatientIdentityRemoved is missing"),
    "identity removed NO": (_set("PatientIdentityRemoved", "NO"), "(0012,0062) PatientIdentityRemoved is not YES"),
    "name at the top": (_set("PatientName", NAME), f"(0010,0010) PatientName {REPLACED}"),
    "name in a sequence": (_set("PatientName", NAME, lambda ds: ds.ReferencedImageSequence[0]),
                           f"(0010,0010) PatientName in (0008,1140) ReferencedImageSequence item 1 {REPLACED}"),
    "name two sequences deep": (
        _set("PersonName", NAME, lambda ds: ds.ContentSequence[2].ContentSequence[0]),
        f"(0040,A123) PersonName in (0040,A730) ContentSequence item 1 in (0040,A730) ContentSequence item 3 "
        f"{REPLACED}"),
    "free text in a replaced sequence": (
        _set("TextValue", f"Seen with {NAME} today", lambda ds: ds.ContentSequence[0]),
        f"(0040,A160) TextValue in (0040,A730) ContentSequence item 1 {REPLACED}"),
    "removed attribute back": (_set("PatientAddress", "12 Thimbleby Row, Ottershaw"),
                               "(0010,1040) PatientAddress is not empty: the profile removes it"),
    "real date": (_set("StudyDate", "20190417"), f"(0008,0020) StudyDate {REPLACED}"),
    "unsafe private tag": (_private(0x0029, "ACME 1.0", 0x10, NAME),
                           "(0029,1010) private attribute is not on the safe private list"),
    "unsafe offset in a safe block": (_private(0x7053, "Philips PET Private Group", 0x42, NAME),
                                      "(7053,1042) private attribute is not on the safe private list"),
    "safe offset under another creator": (_private(0x7053, "ACME 1.0", 0x00, NAME),
                                          "(7053,1000) private attribute is not on the safe private list"),
    "private creator alone": (_orphan_creator, "(0029,0010) private creator has no attribute in its block"),
    "SOP instance UID outside 2.25": (_set("SOPInstanceUID", "1.2.826.0.1.3680043.8.498.1"),
                                      f"(0008,0018) SOPInstanceUID {NOT_KEYED}"),
    "text after 2.25.": (_invalid_uid("StudyInstanceUID", "2.25.Featherstonehaugh"),
                         f"(0020,000D) StudyInstanceUID {NOT_KEYED}"),
    "instance UID well-known": (_set("SeriesInstanceUID", "1.2.840.10008.1.4.1.1"),
                                f"(0020,000E) SeriesInstanceUID {NOT_KEYED}"),
    "referenced UID outside 2.25": (
        _set("ReferencedSOPInstanceUID", "1.2.826.0.1.3680043.8.498.2", lambda ds: ds.SourceImageSequence[0]),
        f"(0008,1155) ReferencedSOPInstanceUID in (0008,2112) SourceImageSequence item 1 {NOT_KEYED}"),
    "SOP instance UID missing": (lambda ds: delattr(ds, "SOPInstanceUID"),
                                 "(0008,0018) SOPInstanceUID is missing: it must be a UID in the 2.25 arc"),
}


@pytest.mark.parametrize("case", ONE_PROBLEM)
def test_a_clean_file_with_one_planted_problem_fails_with_exactly_that_problem(
        tmp_path: Path, clean: tuple[Path, Planted], case: str) -> None:
    out, values = clean
    change, problem = ONE_PROBLEM[case]
    problems = check_file(changed(out, tmp_path, change))
    assert problems == [problem]
    assert_quotes_nothing(problems, values.values | {NAME, "Thimbleby Row", "20190417"})


def test_the_media_storage_uid_of_the_file_meta_must_be_keyed_too(tmp_path: Path,
                                                                    clean: tuple[Path, Planted]) -> None:
    out, _ = clean

    def change(ds: FileDataset) -> None:
        ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.826.0.1.3680043.8.498.3")

    assert check_file(changed(out, tmp_path, change)) == [f"(0002,0003) MediaStorageSOPInstanceUID {NOT_KEYED}"]


@pytest.mark.parametrize(("keyword", "value"), [
    ("PatientName", "ANONYMOUS"),  # the dummy name the anonymizer writes where it has no pseudonym
    ("PatientName", ""),
    ("PatientID", ""),
    ("StudyDate", "19000101"),  # the anonymizer's dummy date
    ("InstitutionName", "REMOVED"),
    ("FrameOfReferenceUID", "1.2.840.10008.1.4.1.1"),  # a well-known frame of reference (Talairach) stays
    ("PatientAddress", ""),  # removed by the profile: empty is as good as absent
])
def test_empty_and_dummy_values_pass(tmp_path: Path, clean: tuple[Path, Planted], keyword: str, value: str) -> None:
    out, _ = clean
    assert check_file(changed(out, tmp_path, _set(keyword, value))) == []


def test_a_file_deidentified_with_retained_dates_fails_the_basic_profile(tmp_path: Path) -> None:
    src, values = planted(tmp_path)
    out = deidentify(src, tmp_path, frozenset({Option.RETAIN_LONG_FULL_DATES}))
    problems = check_file(out)
    assert f"(0008,0020) StudyDate {REPLACED}" in problems
    assert all("Date" in p or "Time" in p for p in problems), problems
    assert_quotes_nothing(problems, values.values)


# ---- not DICOM, cut short, damaged -----------------------------------------------------------------------

NOT_DICOM = "not readable as DICOM: no 'DICM' prefix after the 128-byte preamble (not a DICOM Part 10 file)"


def _pixel_data_offset(path: Path) -> int:
    return path.read_bytes().rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010), little endian, the last element


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p.write_text(f"Patient: {NAME}\nDOB 1957-03-02\n"), NOT_DICOM),
    (lambda p: p.write_bytes(b""), NOT_DICOM),
    (lambda p: p.write_bytes(b"\0" * 128 + b"DICM"), "not readable as DICOM: the file holds no data set after its "
                                                     "header"),
    (lambda p: None, "not readable as DICOM: the file cannot be read (No such file or directory)"),
    (lambda p: p.mkdir(), "not readable as DICOM: the file cannot be read (Is a directory)"),
])
def test_what_is_not_a_dicom_file_gives_one_problem(tmp_path: Path, make: Callable[[Path], None],
                                                     problem: str) -> None:
    path = tmp_path / "upload.part"
    make(path)
    assert check_file(path) == [problem]


def test_a_truncated_file_gives_one_problem(tmp_path: Path, clean: tuple[Path, Planted]) -> None:
    out, _ = clean
    data = out.read_bytes()
    inside_pixels = tmp_path / "cut-in-pixels.dcm"
    inside_pixels.write_bytes(data[:_pixel_data_offset(out) + 100])
    before_pixels = tmp_path / "cut-before-pixels.dcm"
    before_pixels.write_bytes(data[:_pixel_data_offset(out)])
    inside_header = tmp_path / "cut-in-a-header.dcm"
    inside_header.write_bytes(data[:_pixel_data_offset(out) + 6])
    assert check_file(inside_pixels) == ["not readable as DICOM: the file is truncated or damaged (an element runs "
                                         "past the end of the file)"]
    assert check_file(before_pixels) == ["not readable as DICOM: the file is truncated (an image without pixel data)"]
    assert check_file(inside_header) == ["not readable as DICOM: the file is truncated or damaged (it ends inside an "
                                         "element header)"]


def test_every_cut_of_a_clean_file_is_rejected_without_an_exception(tmp_path: Path,
                                                                     clean: tuple[Path, Planted]) -> None:
    out, _ = clean
    data = out.read_bytes()
    cut = tmp_path / "cut.dcm"
    for size in range(0, len(data), 3):
        cut.write_bytes(data[:size])
        problems = check_file(cut)
        assert problems, f"a file cut to {size} of {len(data)} bytes passed"
        assert problems[0].startswith("not readable as DICOM: ") or "(0012,0062)" in problems[0], (size, problems)


def test_a_malformed_file_gives_one_problem(tmp_path: Path, clean: tuple[Path, Planted]) -> None:
    out, _ = clean
    data = bytearray(out.read_bytes())
    at = data.index(b"\x10\x00\x10\x00PN")  # (0010,0010) PatientName, explicit VR little endian
    data[at + 4:at + 6] = b"ZZ"  # a VR that does not exist
    damaged = tmp_path / "damaged.dcm"
    damaged.write_bytes(bytes(data))
    assert check_file(damaged) == ["not readable as DICOM: malformed data (a tag, length, VR or value cannot be "
                                   "parsed)"]
