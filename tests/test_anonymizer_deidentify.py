"""deidentify() on pydicom's own test files: every action, options, UIDs, refusals, verification."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from anonymizer.deidentify import Profile, deidentify, identifying_values, resolve
from anonymizer.errors import Refused
from anonymizer.profile import Option, RuleTable
from anonymizer.pseudonyms import Pseudonymizer
from anonymizer.values import tolerant
from anonymizer.verify import check

KEY = b"k" * 32
# pydicom's bundled files: these de-identify; the REFUSED ones are secondary captures and
# ultrasound without Burned In Annotation, which must not leave without a pixel-cleaning rule.
FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "rtstruct.dcm", "test-SR.dcm",
         "reportsi.dcm", "waveform_ecg.dcm", "nested_priv_SQ.dcm", "priv_SQ.dcm", "examples_overlay.dcm",
         "liver_1frame.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "UN_sequence.dcm"]
REFUSED = ["image_dfl.dcm", "ExplVR_BigEnd.dcm", "JPEG2000.dcm", "SC_rgb_small_odd.dcm"]


def load(name: str) -> Dataset:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    with warnings.catch_warnings():  # some test files carry deliberately invalid values (pydicom warns)
        warnings.simplefilter("ignore", UserWarning)
        return pydicom.dcmread(path, force=True)


def profile(*options: Option, key: bytes = KEY) -> Profile:
    return Profile(Pseudonymizer(key), frozenset(options))


@pytest.mark.parametrize("name", FILES)
def test_pydicom_files_come_out_verified_and_writable(name: str) -> None:
    original = load(name)
    out, report = deidentify(original, profile())
    with tolerant():
        values = identifying_values(original, profile(), RuleTable.load())
    check(values, out)  # raises Refused on any leak
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert not any(elem.tag.is_private for elem in out)  # no option retains private data
    if "SOPInstanceUID" in original:
        assert out.SOPInstanceUID != original.SOPInstanceUID
        assert out.SOPInstanceUID.startswith("2.25.")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # values the input already had invalid stay invalid
        pydicom.dcmwrite(buffer, out, enforce_file_format="SOPClassUID" in out and "SOPInstanceUID" in out)
    assert report.to_dict()["actions"] or report.private_removed  # something was done to every file


@pytest.mark.parametrize("name", REFUSED)
def test_images_that_commonly_carry_burned_in_text_are_refused(name: str) -> None:
    with pytest.raises(Refused, match="burned-in text"):
        deidentify(load(name), profile())


def test_the_input_is_never_changed() -> None:
    original = load("CT_small.dcm")
    before = original.to_json_dict()
    deidentify(original, profile())
    assert original.to_json_dict() == before


def test_file_meta_is_regenerated_and_the_preamble_zeroed() -> None:
    original = load("CT_small.dcm")
    original.preamble = b"Quixote^Zebulon".ljust(128, b"\0")
    original.file_meta.SourceApplicationEntityTitle = "QUIXOTE_AE"
    out, _ = deidentify(original, profile())
    assert out.preamble == b"\0" * 128
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.file_meta.ImplementationVersionName == "SERVICEGATE_1"


def test_uids_are_consistent_across_files_and_keys_matter() -> None:
    ct = load("CT_small.dcm")
    a, _ = deidentify(ct, profile())
    b, _ = deidentify(load("CT_small.dcm"), profile())
    c, _ = deidentify(ct, profile(key=b"x" * 32))
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.StudyInstanceUID != c.StudyInstanceUID
    assert a.SOPClassUID == ct.SOPClassUID  # well-known UIDs stay
    assert len(a.StudyInstanceUID) <= 64


def test_patient_pseudonyms_are_consistent_and_not_empty() -> None:
    a, _ = deidentify(load("CT_small.dcm"), profile())
    b, _ = deidentify(load("CT_small.dcm"), profile())
    assert str(a.PatientName) == str(b.PatientName)
    assert str(a.PatientName).startswith("ANONYMOUS^")
    assert a.PatientID.startswith("SG-")


def test_retain_uids_keeps_them() -> None:
    original = load("CT_small.dcm")
    out, _ = deidentify(original, profile(Option.RETAIN_UIDS))
    assert out.SOPInstanceUID == original.SOPInstanceUID
    assert out.StudyInstanceUID == original.StudyInstanceUID
    assert "113110" in [item.CodeValue for item in out.DeidentificationMethodCodeSequence]


def test_full_dates_keep_dates_and_modified_dates_shift_them_consistently() -> None:
    original = load("CT_small.dcm")
    full, _ = deidentify(original, profile(Option.RETAIN_LONG_FULL_DATES))
    assert full.StudyDate == original.StudyDate
    assert full.LongitudinalTemporalInformationModified == "UNMODIFIED"
    shifted, _ = deidentify(original, profile(Option.RETAIN_LONG_MODIFIED_DATES))
    assert shifted.LongitudinalTemporalInformationModified == "MODIFIED"
    assert shifted.StudyDate != original.StudyDate
    assert len(shifted.StudyDate) == 8
    again, _ = deidentify(original, profile(Option.RETAIN_LONG_MODIFIED_DATES))
    assert again.StudyDate == shifted.StudyDate


def test_safe_private_is_kept_only_with_its_option() -> None:
    ds = load("CT_small.dcm")
    block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
    block.add_new(0x00, "DS", "1.234")
    block.add_new(0x55, "LO", "Quixote private note")  # not on the safe list
    kept, report = deidentify(ds, profile(Option.RETAIN_SAFE_PRIVATE))
    assert kept[0x7053, 0x1000].value == "1.234"
    assert (0x7053, 0x1055) not in kept
    assert kept[0x7053, 0x0010].value == "Philips PET Private Group"
    assert report.private_kept >= 1
    removed, _ = deidentify(ds, profile())
    assert not any(elem.tag.group == 0x7053 for elem in removed)


def test_safety_net_removes_values_hidden_in_kept_attributes() -> None:
    ds = load("CT_small.dcm")
    ds.PatientName = "Quixote^Zebulon"
    ds.Manufacturer = "scanner of Zebulon Quixote"  # Manufacturer is kept by the table
    out, report = deidentify(ds, profile())
    assert out.Manufacturer == "scanner of REMOVED REMOVED"  # the names go, the Type 2 attribute stays
    assert "(0008,0070)" in report.safety_net


def test_short_names_do_not_fail_every_file() -> None:
    ds = load("CT_small.dcm")
    ds.PatientName = "Li^Bo"
    ds.Manufacturer = "Libo Medical"  # contains "Li" and "bo" as substrings: must stay
    out, report = deidentify(ds, profile())
    assert out.Manufacturer == "Libo Medical"
    assert report.safety_net == []


@pytest.mark.parametrize(("change", "reason"), [
    (lambda ds: setattr(ds, "BurnedInAnnotation", "YES"), "Burned In Annotation is YES"),
    (lambda ds: setattr(ds, "Modality", "US"), "commonly carry burned-in text"),
    (lambda ds: setattr(ds, "EncapsulatedDocument", b"%PDF-1.4"), "encapsulated document"),
])
def test_burned_in_text_and_documents_are_refused(change: object, reason: str) -> None:
    ds = load("CT_small.dcm")
    change(ds)  # type: ignore[operator]
    with pytest.raises(Refused, match=reason):
        deidentify(ds, profile())


def test_secondary_capture_without_the_attribute_is_refused() -> None:
    with pytest.raises(Refused, match="secondary-capture"):
        deidentify(load("SC_rgb_small_odd.dcm"), profile())


def test_verification_refuses_a_leak_and_does_not_name_the_value() -> None:
    original = load("CT_small.dcm")
    out, _ = deidentify(original, profile())
    out.ImageComments = f"for {original.PatientName}"
    values = identifying_values(original, profile(), RuleTable.load())
    with pytest.raises(Refused) as info:
        check(values, out)
    assert "(0020,4000)" in info.value.reason
    assert str(original.PatientName) not in info.value.reason


@pytest.mark.parametrize(("code", "expected"), [
    ("X", "X"), ("Z", "Z"), ("D", "D"), ("K", "K"), ("C", "C"), ("U", "U"),
    ("Z/D", "D"), ("X/Z", "Z"), ("X/D", "D"), ("X/Z/D", "D"), ("X/Z/U*", "U*"),
])
def test_combined_codes_resolve_to_the_choice_that_keeps_any_iod_valid(code: str, expected: str) -> None:
    assert resolve(code) == expected


def test_every_code_in_the_table_is_understood() -> None:
    codes = {rule.basic for rule in RuleTable.load().rules}
    codes |= {code for rule in RuleTable.load().rules for code in rule.overrides.values()}
    assert {resolve(code) for code in codes} <= {"X", "Z", "D", "K", "C", "U", "U*"}


def test_writes_to_a_file_round_trip(tmp_path: Path) -> None:
    out, _ = deidentify(load("MR_small.dcm"), profile())
    target = tmp_path / "out.dcm"
    pydicom.dcmwrite(target, out, enforce_file_format=True)
    assert pydicom.dcmread(target).PatientIdentityRemoved == "YES"
