"""Clean Pixel Data on real files: configured rectangles zeroed in every frame while the pixel data streams,
exactly there and nowhere else; burned-in images admitted only by a matching rule; compressed or ambiguous
pixel data refused; bad rule files named by file, rule and key; the CLI's --pixel-rules end to end.

The expected bytes are computed here pixel by pixel, independently of `pixels.blank_plan`'s byte ranges
(numpy is not installed in this environment, so the comparison is on bytes).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from anonymizer import files
from anonymizer.batch import run_batch
from anonymizer.deidentify import Profile, deidentify
from anonymizer.errors import ProfileError, Refused
from anonymizer.files import FileResult, deidentify_file
from anonymizer.pixels import BlankPlan, PixelRule, blank_plan, load_rules, matching_rule
from anonymizer.profile import Option
from anonymizer.pseudonyms import Pseudonymizer

REPO = Path(__file__).resolve().parents[1]
KEY = b"p" * 32
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PATIENT = "Featherstonehaugh^Hieronymus"
ROWS, COLUMNS = 48, 64
RECTANGLES = ((0, 0, COLUMNS, 6), (50, 40, 9, 5), (3, 10, 7, 4), (5, 12, 10, 2))  # band, corner, two overlapping
RULE = PixelRule(name="Acme Sonix 9", manufacturer="ACME", model="Sonix 9", modality="US", rows=ROWS,
                 columns=COLUMNS, rectangles=RECTANGLES)
RULES_TOML = f"""
[[rule]]
name = "Someone else's"
manufacturer = "Globex"
rectangles = [[0, 0, 10, 10]]

[[rule]]
name = "Acme Sonix 9"
manufacturer = " acme "
model = "SONIX 9"
modality = "us"
rows = {ROWS}
columns = {COLUMNS}
rectangles = {[list(r) for r in RECTANGLES]}
"""


def profile(*rules: PixelRule, options: frozenset[Option] = frozenset()) -> Profile:
    return Profile(Pseudonymizer(KEY), options, pixel_rules=rules)


def pixel_bytes(rows: int, columns: int, samples: int, bits: int, frames: int) -> bytes:
    """Never zero, and different in every frame, sample and byte, so a misplaced range shows."""
    size = rows * columns * samples * (bits // 8) * frames
    return bytes((i * 7 + i // 251) % 255 + 1 for i in range(size))


def make_image(path: Path, *, frames: int = 1, samples: int = 1, planar: int | None = 0, bits: int = 8,
               rows: int = ROWS, columns: int = COLUMNS, model: str = "Sonix 9", modality: str = "US",
               burned: str | None = None, syntax: UID = ExplicitVRLittleEndian, sop_class: str | None = None,
               pixels: bytes | None = None) -> bytes:
    """A US-like uncompressed image with a planted patient; returns its pixel data value."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class or (US_MULTIFRAME if frames > 1 else US_IMAGE))
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, preamble=b"\0" * 128, file_meta=meta)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT, "MRN-88412397", "19610412"
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = modality, "ACME", model
    ds.StudyDate, ds.AccessionNumber = "20240105", "ACC-5521873"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples > 1 and planar is not None:
        ds.PlanarConfiguration = planar
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = "33.3"
    if burned is not None:
        ds.BurnedInAnnotation = burned
    value = pixels if pixels is not None else pixel_bytes(rows, columns, samples, bits, frames)
    ds.PixelData = value
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)  # in the encoding the transfer syntax names
    return value


def expected_blanked(value: bytes, *, frames: int, samples: int, planar: int, bits: int,
                     rectangles: tuple[tuple[int, int, int, int], ...], rows: int = ROWS,
                     columns: int = COLUMNS) -> bytes:
    """`value` with every byte of every sample of every pixel inside a rectangle zeroed, pixel by pixel."""
    width = bits // 8
    inside = {(r, c) for x, y, w, h in rectangles for r in range(y, y + h) for c in range(x, x + w)}
    out = bytearray(value)
    frame_bytes = rows * columns * samples * width
    for frame in range(frames):
        for r, c in inside:
            for s in range(samples):
                pixel = (s * rows * columns + r * columns + c) if planar else ((r * columns + c) * samples + s)
                start = frame * frame_bytes + pixel * width
                out[start:start + width] = bytes(width)
    return bytes(out)


def output_pixels(result: FileResult) -> bytes:
    assert result.status == "accepted", result.reason
    assert result.output is not None
    value = pydicom.dcmread(result.output).PixelData
    assert isinstance(value, bytes)
    return value


def method_codes(path: Path) -> list[str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


# ---- refused without a rule, cleaned with one -------------------------------------------------------

def test_ultrasound_without_burned_in_annotation_is_refused_without_a_rule(tmp_path: Path) -> None:
    src = tmp_path / "us.dcm"
    make_image(src)
    for rules in ((), (PixelRule("Other model", manufacturer="ACME", model="Sonix 7", rectangles=((0, 0, 4, 4),)),)):
        result = deidentify_file(src, tmp_path / "out", profile(*rules))
        assert result.status == "refused"
        assert result.reason is not None
        assert "burned-in text" in result.reason
        assert "pixel-cleaning rule" in result.reason
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.dcm"))


@pytest.mark.parametrize(("frames", "samples", "planar", "bits"), [
    (1, 1, 0, 8),  # single frame, small: the value was read into memory
    (4, 1, 0, 16),  # two bytes per sample
    (1, 3, 0, 8),  # RGB, interleaved
    (1, 3, 1, 8),  # RGB, colour by plane
    (12, 3, 0, 8),  # multi-frame RGB, larger than files.DEFER_BYTES: streamed from the source
    (12, 3, 1, 8),
])
def test_a_matching_rule_zeroes_exactly_its_rectangles_in_every_frame(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: int, samples: int, planar: int, bits: int) -> None:
    monkeypatch.setattr(files, "COPY_CHUNK_BYTES", 1000)  # many chunks; ranges and frames span chunk borders
    src = tmp_path / "us.dcm"
    original = make_image(src, frames=frames, samples=samples, planar=planar, bits=bits)
    if frames == 12:
        assert len(original) > files.DEFER_BYTES
    result = deidentify_file(src, tmp_path / "out", profile(RULE))

    cleaned = output_pixels(result)
    assert cleaned == expected_blanked(original, frames=frames, samples=samples, planar=planar, bits=bits,
                                       rectangles=RECTANGLES)
    assert cleaned != original
    assert result.report["pixel_rule"] == "Acme Sonix 9"
    assert "clean-pixel-data" in result.report["options"]
    assert result.output is not None
    assert "113101" in method_codes(result.output)
    written = pydicom.dcmread(result.output, stop_before_pixels=True)
    assert written.BurnedInAnnotation == "NO"
    assert PATIENT.split("^")[0] not in result.output.read_bytes().decode("latin-1")


def test_all_uncompressed_syntaxes_are_cleaned(tmp_path: Path) -> None:
    for syntax in (ImplicitVRLittleEndian, ExplicitVRBigEndian):
        src = tmp_path / f"{syntax}.dcm"
        original = make_image(src, frames=3, bits=8, syntax=syntax)
        cleaned = output_pixels(deidentify_file(src, tmp_path / "out", profile(RULE)))
        assert cleaned == expected_blanked(original, frames=3, samples=1, planar=0, bits=8, rectangles=RECTANGLES)


def test_burned_in_annotation_yes_with_a_matching_rule_is_cleaned(tmp_path: Path) -> None:
    src = tmp_path / "ct.dcm"
    original = make_image(src, modality="CT", sop_class=CT_IMAGE, burned="YES")
    ct_rule = PixelRule("CT screen save", manufacturer="acme", modality="CT", rectangles=((0, 0, COLUMNS, 6),))
    assert deidentify_file(src, tmp_path / "out", profile()).status == "refused"
    result = deidentify_file(src, tmp_path / "out", profile(RULE, ct_rule))  # RULE is for US: the second matches
    assert output_pixels(result) == expected_blanked(original, frames=1, samples=1, planar=0, bits=8,
                                                     rectangles=((0, 0, COLUMNS, 6),))
    assert result.report["pixel_rule"] == "CT screen save"


def test_a_rule_that_does_not_match_leaves_a_ct_untouched_and_without_the_code(tmp_path: Path) -> None:
    src = tmp_path / "ct.dcm"
    original = make_image(src, modality="CT", sop_class=CT_IMAGE)
    result = deidentify_file(src, tmp_path / "out", profile(RULE, options=frozenset({Option.CLEAN_PIXEL_DATA})))
    assert output_pixels(result) == original
    assert result.report["pixel_rule"] is None
    assert "clean-pixel-data" not in result.report["options"]
    assert result.output is not None
    assert "113101" not in method_codes(result.output)


def test_rules_match_on_each_criterion_and_the_first_match_wins(tmp_path: Path) -> None:
    src = tmp_path / "us.dcm"
    make_image(src)
    ds = pydicom.dcmread(src, stop_before_pixels=False)
    rect = ((0, 0, 1, 1),)
    assert matching_rule(ds, (RULE,)) is RULE
    for other in (PixelRule("m", model="Sonix 7", rectangles=rect), PixelRule("f", manufacturer="Globex",
                  rectangles=rect), PixelRule("mod", modality="CT", rectangles=rect),
                  PixelRule("r", rows=ROWS + 1, rectangles=rect), PixelRule("c", columns=COLUMNS - 1, rectangles=rect)):
        assert matching_rule(ds, (other,)) is None, other.name
    first, second = PixelRule("a", modality="US", rectangles=rect), PixelRule("b", model="sonix 9", rectangles=rect)
    assert matching_rule(ds, (first, second)) is first
    no_pixels = pydicom.dcmread(src, stop_before_pixels=True)
    assert matching_rule(no_pixels, (first,)) is None  # rules are for images


def test_pure_deidentify_blanks_pixel_data_held_in_memory_and_leaves_the_input(tmp_path: Path) -> None:
    src = tmp_path / "us.dcm"
    original = make_image(src, samples=3, planar=1)
    ds = pydicom.dcmread(src)
    assert ds.PixelData == original  # converted: a DataElement in memory
    out, report = deidentify(ds, profile(RULE))
    assert out.PixelData == expected_blanked(original, frames=1, samples=3, planar=1, bits=8, rectangles=RECTANGLES)
    assert ds.PixelData == original
    assert report.pixel_plan is not None
    assert report.to_dict()["pixel_rule"] == "Acme Sonix 9"
    assert [item.CodeValue for item in out.DeidentificationMethodCodeSequence] == ["113100", "113101"]


# ---- refused instead of cleaned -----------------------------------------------------------------------

def _rle_frame(rows: int, columns: int) -> bytes:
    """One valid RLE Lossless frame (PS3.5 G) of 8-bit samples: one segment of literal runs, one per row."""
    segment = b"".join(bytes([columns - 1]) + bytes((r + c) % 255 + 1 for c in range(columns)) for r in range(rows))
    header = struct.pack("<16L", 1, 64, *([0] * 14))
    return header + segment + b"\0" * (len(segment) % 2)


def test_compressed_pixel_data_with_a_matching_rule_is_refused_with_the_reason(tmp_path: Path) -> None:
    src = tmp_path / "rle.dcm"
    make_image(src, syntax=RLELossless, pixels=encapsulate([_rle_frame(ROWS, COLUMNS)]))
    ds = pydicom.dcmread(src, defer_size=1024)
    elem = ds.get_item(0x7FE00010, keep_deferred=True)
    assert isinstance(elem, RawDataElement)
    assert elem.length == files.UNDEFINED_LENGTH
    result = deidentify_file(src, tmp_path / "out", profile(RULE))
    assert result.status == "refused"
    assert result.reason is not None
    assert "Clean Pixel Data needs uncompressed pixel data" in result.reason
    assert "RLE Lossless" in result.reason
    assert not any((tmp_path / "out").rglob("*.dcm"))


def _dataset(tmp_path: Path, **kwargs: object) -> Dataset:
    src = tmp_path / "img.dcm"
    make_image(src, **kwargs)  # type: ignore[arg-type]
    return pydicom.dcmread(src, defer_size=16)


@pytest.mark.parametrize(("kwargs", "change", "reason"), [
    ({"bits": 8}, lambda ds: setattr(ds, "BitsAllocated", 1), "whole bytes"),
    ({"samples": 3, "planar": None}, None, "Planar Configuration is missing"),
    ({"samples": 3}, lambda ds: setattr(ds, "PhotometricInterpretation", "YBR_FULL_422"), "chroma-subsampled"),
    ({"frames": 3}, lambda ds: setattr(ds, "NumberOfFrames", 4), "need"),
    ({"bits": 8}, lambda ds: setattr(ds, "Rows", ROWS - 1), "need"),
    ({"bits": 8}, lambda ds: delattr(ds, "Columns"), "Columns is missing"),
])
def test_pixel_data_that_cannot_be_cleaned_with_certainty_is_refused(
        tmp_path: Path, kwargs: dict[str, object], change: object, reason: str) -> None:
    ds = _dataset(tmp_path, **kwargs)
    if callable(change):
        change(ds)
    with pytest.raises(Refused, match=reason):
        blank_plan(ds, RULE)


def test_a_rectangle_beyond_the_image_is_refused(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    loose = PixelRule("no size", modality="US", rectangles=((COLUMNS - 4, 0, 5, 1),))
    with pytest.raises(Refused, match="reaches beyond this 64x48 image"):
        blank_plan(ds, loose)


def test_the_plan_merges_rows_and_repeats_per_frame(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, frames=3)
    band = PixelRule("band", modality="US", rectangles=((0, 0, COLUMNS, 6), (0, 6, COLUMNS, 2)))
    plan = blank_plan(ds, band)
    frame = ROWS * COLUMNS
    assert plan.frame_ranges == ((0, 8 * COLUMNS),)  # two touching full-width bands: one range
    assert list(plan) == [(0, 8 * COLUMNS), (frame, 8 * COLUMNS), (2 * frame, 8 * COLUMNS)]


def test_applying_a_plan_chunk_by_chunk_equals_applying_it_whole() -> None:
    plan = BlankPlan(rule="r", frames=5, frame_bytes=97, frame_ranges=((0, 3), (10, 40), (90, 7)))
    value = bytes(range(1, 256)) * 2
    value = value[:plan.length + 1]  # with a padding byte
    whole = plan.apply(value, 0)
    assert whole.count(0) == 5 * 50
    for size in (1, 2, 3, 7, 50, 96, 97, 98, 500):
        pieces = [plan.apply(value[i:i + size], i) for i in range(0, len(value), size)]
        assert b"".join(pieces) == whole, size


def test_cleaning_a_large_multiframe_file_needs_constant_memory(tmp_path: Path) -> None:
    src = tmp_path / "cine.dcm"
    rows, columns, frames = 240, 320, 120  # 27.6 MB of RGB
    frame = bytes((i % 253) + 1 for i in range(rows * columns * 3))
    make_image(src, frames=frames, samples=3, planar=0, rows=rows, columns=columns, pixels=frame * frames)
    rule = PixelRule("cine", modality="US", rectangles=((0, 0, columns, 20), (200, 200, 100, 30)))
    tracemalloc.start()
    try:
        result = deidentify_file(src, tmp_path / "out", profile(rule))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status == "accepted", result.reason
    assert peak < 12 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert result.output is not None
    written = pydicom.dcmread(result.output, defer_size=1024)
    elem = written.get_item(0x7FE00010, keep_deferred=True)
    assert isinstance(elem, RawDataElement)
    with open(result.output, "rb") as fh:  # check the first, a middle and the last frame
        for index in (0, frames // 2, frames - 1):
            fh.seek(elem.value_tell + index * len(frame))
            assert fh.read(len(frame)) == expected_blanked(frame, frames=1, samples=3, planar=0, bits=8,
                                                           rectangles=rule.rectangles, rows=rows, columns=columns)


# ---- the rules file ---------------------------------------------------------------------------------------

def test_load_rules_reads_every_key(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES_TOML)
    rules = load_rules(path)
    assert [r.name for r in rules] == ["Someone else's", "Acme Sonix 9"]
    acme = rules[1]
    assert (acme.manufacturer, acme.model, acme.modality, acme.rows, acme.columns) == (
        "acme", "SONIX 9", "us", ROWS, COLUMNS)
    assert acme.rectangles == RECTANGLES
    assert rules[0].model is None


@pytest.mark.parametrize(("text", "expected"), [
    ("[[rule]\nname = 1", "not valid TOML"),
    ("", "defines no rule"),
    ("title = 'x'\n", "unknown key 'title'"),
    ("[rule]\nname = 'a'\n", "defines no rule"),
    ("[[rule]]\nname = 'a'\nmodality = 'US'\nrectangle = [[0, 0, 1, 1]]\n", "rule 1 ('a'): unknown key 'rectangle'"),
    ("[[rule]]\nmodality = 'US'\nrectangles = [[0, 0, 1, 1]]\n", "rule 1: key 'name'"),
    ("[[rule]]\nname = 'a'\nrectangles = [[0, 0, 1, 1]]\n", "no criterion"),
    ("[[rule]]\nname = 'a'\nmodality = 'US'\n", "key 'rectangles' must be"),
    ("[[rule]]\nname = 'a'\nmodality = 'US'\nrectangles = [0, 0, 1, 1]\n", "key 'rectangles', rectangle 1"),
    ("[[rule]]\nname = 'a'\nmodality = 'US'\nrectangles = [[0, 0, 0, 1]]\n", "key 'rectangles', rectangle 1"),
    ("[[rule]]\nname = 'a'\nmodality = 'US'\nrectangles = [[-1, 0, 1, 1]]\n", "key 'rectangles', rectangle 1"),
    ("[[rule]]\nname = 'a'\nrows = 10\ncolumns = 10\nrectangles = [[0, 0, 11, 1]]\n", "reaches beyond the 10x10"),
    ("[[rule]]\nname = 'a'\nrows = '600'\nrectangles = [[0, 0, 1, 1]]\n", "key 'rows' must be a whole number"),
    ("[[rule]]\nname = 'a'\ncolumns = 0\nrectangles = [[0, 0, 1, 1]]\n", "key 'columns' must be a whole number"),
    ("[[rule]]\nname = 'a'\nmanufacturer = 5\nrectangles = [[0, 0, 1, 1]]\n", "key 'manufacturer' must be"),
    ("[[rule]]\nname = 'a'\nmodality = 'US'\nrectangles = [[0, 0, 1, 1]]\n"
     "[[rule]]\nname = 'a'\nmodality = 'CT'\nrectangles = [[0, 0, 1, 1]]\n", "rule 2 ('a'): key 'name'"),
])
def test_a_bad_rules_file_names_the_file_the_rule_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as caught:
        load_rules(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_a_missing_rules_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read the pixel rules file .*missing.toml"):
        load_rules(tmp_path / "missing.toml")


# ---- batch and CLI ---------------------------------------------------------------------------------------

def test_a_batch_with_worker_processes_carries_the_rules(tmp_path: Path) -> None:
    inputs = [tmp_path / "in" / f"{n}.dcm" for n in range(3)]
    inputs[0].parent.mkdir()
    originals = [make_image(path, frames=n + 1) for n, path in enumerate(inputs)]
    report = run_batch(inputs, tmp_path / "out", options=frozenset(), key_file=tmp_path / "site.key", jobs=2,
                       pixel_rules=(RULE,))
    assert [r.status for r in report.results] == ["accepted"] * 3
    for n, (result, original) in enumerate(zip(report.results, originals, strict=True)):
        assert output_pixels(result) == expected_blanked(original, frames=n + 1, samples=1, planar=0, bits=8,
                                                         rectangles=RECTANGLES)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "anonymize", *map(str, args)], cwd=REPO, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=300)


def test_the_cli_pixel_rules_option_end_to_end(tmp_path: Path) -> None:
    src = tmp_path / "in" / "us.dcm"
    src.parent.mkdir()
    original = make_image(src, frames=2, samples=3, planar=1)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_TOML)
    key = tmp_path / "site.key"

    without = cli(src.parent, "--out", tmp_path / "out1", "--key-file", key, "--quiet")
    assert without.returncode == 3, without.stderr
    assert "burned-in text" in without.stderr
    assert not any((tmp_path / "out1").rglob("*.dcm"))

    done = cli(src.parent, "--out", tmp_path / "out2", "--key-file", key, "--pixel-rules", rules,
               "--report", tmp_path / "report.json")
    assert done.returncode == 0, done.stderr
    (output,) = (tmp_path / "out2").rglob("*.dcm")
    assert pydicom.dcmread(output).PixelData == expected_blanked(original, frames=2, samples=3, planar=1, bits=8,
                                                                  rectangles=RECTANGLES)
    assert "113101" in method_codes(output)
    assert '"pixel_rule": "Acme Sonix 9"' in (tmp_path / "report.json").read_text()


def test_the_cli_refuses_a_bad_rules_file_and_the_option_without_rules(tmp_path: Path) -> None:
    src = tmp_path / "us.dcm"
    make_image(src)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\nname = 'a'\nmodality = 'US'\nrectangles = [[0, 0, 0, 1]]\n")
    key = tmp_path / "site.key"
    result = cli(src, "--out", tmp_path / "out", "--key-file", key, "--pixel-rules", bad)
    assert result.returncode == 2
    assert "key 'rectangles'" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli(src, "--out", tmp_path / "out", "--key-file", key, "--option", "clean-pixel-data")
    assert result.returncode == 2
    assert "needs --pixel-rules" in result.stderr
