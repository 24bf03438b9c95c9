"""Validity: de-identification introduces no error that dicom3tools' `dciodvfy` did not already report.

Issue 3, acceptance: "for each test file, dciodvfy reports no error on the output that it did not report on
the input". Each case de-identifies one file with `deidentify_file` under one profile, validates input and
output with `dciodvfy` (output format: docs PLATFORM.md section 9), and asserts that the output's set of
normalised Error lines is a subset of the input's. Warnings are not compared: the acceptance line is about
errors, and de-identification legitimately changes warnings (emptied Type 2 values, fewer private tags).

A case cannot pass vacuously: dciodvfy must have run to completion on both files (exit status 0 or 1, never
a crash) and named the IOD it validated against, and that IOD must be the same for input and output.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from anonymizer.deidentify import Profile
from anonymizer.files import deidentify_file
from anonymizer.profile import Option
from anonymizer.pseudonyms import Pseudonymizer
from tests.dicom_corpus import write_planted_file

KEY = b"v" * 32
DCIODVFY_TIMEOUT = 120  # seconds; dciodvfy takes well under one on these files

# pydicom's bundled test files that the de-identifier accepts (none of the listed ones is refused).
PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    # Not rtdose.dcm: it is accepted, but dciodvfy (dicom3tools 1.00~20220618) aborts on the *input* itself
    # (assertion `bitsallocated <= bytesinword*8u` in attrothr.cc: a 32-bit dose grid), so it cannot judge
    # the output either. Its de-identification is covered by tests/test_anonymizer_deidentify.py.
    "rtstruct.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "waveform_ecg.dcm",
    "examples_overlay.dcm",
    "liver_1frame.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
]
PLANTED_SEEDS = range(5)

PROFILES: dict[str, frozenset[Option]] = {
    "basic": frozenset(),
    "retain-uids": frozenset({Option.RETAIN_UIDS}),
    "retain-long-modified-dates": frozenset({Option.RETAIN_LONG_MODIFIED_DATES}),
    "clean-descriptors+structured-content+graphics": frozenset(
        {Option.CLEAN_DESCRIPTORS, Option.CLEAN_STRUCTURED_CONTENT, Option.CLEAN_GRAPHICS}),
}

SOURCES = [f"pydicom:{name}" for name in PYDICOM_FILES] + [f"planted:{seed}" for seed in PLANTED_SEEDS]


# ---- running dciodvfy ----------------------------------------------------------------------------

# An Error line is either bare (`Error - <message>`) or, for errors met while parsing, prefixed with the
# tag, its VR and a `?` (`(0x7fe1,0x1010) SQ ? Error - <message>`); the tag is kept, it names the attribute.
_ERROR_LINE = re.compile(r"^(?:(?P<tag>\(0x[0-9a-f]{4},0x[0-9a-f]{4}\))\s+(?:[A-Z]{2}\s+)?\?\s+(?:-\s+)?)?"
                         r"Error - (?P<message>.*)$", re.IGNORECASE)
# The IOD line: the one bare word dciodvfy prints, naming the IOD it validated against (`CTImage`).
_IOD_LINE = re.compile(r"^[A-Z][A-Za-z0-9]+$")

# Normalisation of an Error message, so that an error the input already had does not look new only because
# de-identification changed a *value* it quotes. What differs legitimately between input and output is
# values: UIDs (replaced by keyed `2.25.` UIDs), names (pseudonyms, dummies), dates, IDs, and with them value
# lengths. dciodvfy quotes values in three ways, each replaced by a placeholder:
# - an element's value in angle brackets after its value index: `PN [1] = <Doe^John>` -> `PN [#] = <…>`;
#   attribute and module names, also in angle brackets (`Element=<Manufacturer> Module=<GeneralEquipment>`),
#   have no `[n] = ` before them and are kept;
# - a value in double quotes: `Illegal root for UID - "9.8.7.6"` -> `"…"`;
# - bare numbers and UIDs: `ReferencedSOPInstanceUID 1.2.3.4`, `Length invalid for this VR = 97` -> `#`
#   (value indexes `[1]` and counts go too: an error that differs only in them is the same kind of error).
#   Numbers inside words and tags (`0x0008`, `1C`) are not bare; the number after `Type ` is the attribute's
#   Type (1, 2, 1C, ...), part of the kind of error, and is kept.
# What is kept is what makes an error the same error: the attribute (name, tag, module) and the kind of
# error ("Missing attribute Type 1", "Value invalid for this VR ... Nothing but zero components", ...). The
# lines are compared as sets, so an error repeated in several items counts once.
_ELEMENT_VALUE = re.compile(r"(\[\d+\] = )<[^>]*>")
_QUOTED = re.compile(r'"[^"]*"')
_NUMBER = re.compile(r"(?<![\w.])(?<!Type )\d+(?:\.\d+)*(?![\w.])")


def normalise(message: str) -> str:
    message = _ELEMENT_VALUE.sub(r"\1<…>", message)
    message = _QUOTED.sub('"…"', message)
    message = _NUMBER.sub("#", message)
    return " ".join(message.split())


def error_lines(stderr: str) -> set[str]:
    """The normalised Error lines of dciodvfy's output."""
    errors = set()
    for line in stderr.splitlines():
        match = _ERROR_LINE.match(line.strip())
        if match:
            tag = f"{match['tag'].lower()} " if match["tag"] else ""
            errors.add(f"{tag}Error - {normalise(match['message'])}")
    return errors


@functools.cache
def dciodvfy_path() -> str | None:
    return shutil.which("dciodvfy")


def require_dciodvfy() -> str:
    path = dciodvfy_path()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dciodvfy (Debian package dicom3tools) is missing: in CI the validity test must run")
        pytest.skip("dicom3tools not installed: run make test as root")
    return path


class Validation:
    """One run of dciodvfy on one file: the IOD it validated against and its normalised errors."""

    def __init__(self, path: Path) -> None:
        run = subprocess.run([require_dciodvfy(), str(path)], capture_output=True, text=True, errors="replace",
                             timeout=DCIODVFY_TIMEOUT, check=False)
        self.returncode = run.returncode
        self.stderr = run.stderr
        self.iods = [line for line in run.stderr.splitlines() if _IOD_LINE.match(line.strip())]
        self.errors = error_lines(run.stderr)

    @property
    def completed(self) -> bool:
        """dciodvfy ran to the end: exit 0 (warnings only) or 1 (errors), not a crash, and named the IOD."""
        return self.returncode in (0, 1) and len(self.iods) == 1

    def describe(self) -> str:
        tail = "\n".join(self.stderr.splitlines()[-5:])
        return f"exit status {self.returncode}, IOD lines {self.iods}; last lines of its output:\n{tail}"


@functools.cache
def validate_input(path: Path) -> Validation:
    return Validation(path)  # an input is the same for every profile: validated once


# ---- the test ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("planted")
    for seed in PLANTED_SEEDS:
        write_planted_file(directory / f"planted-{seed}.dcm", seed)
    return directory


def source_path(source: str, planted_dir: Path) -> Path:
    kind, name = source.split(":")
    if kind == "planted":
        return planted_dir / f"planted-{name}.dcm"
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not installed"
    return Path(path)


def test_error_normalisation() -> None:
    """Values quoted in a message are masked; the attribute and the kind of error are kept."""
    stderr = "\n".join([
        "CTImage",
        'Error - Illegal root for UID - "9.8.7.6" in (0x0008,0x1155) Referenced SOP Instance UID',
        "Error - Value invalid for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = <Doe^Jane> - "
        "Length invalid for this VR = 97, expected <= 64",
        "Error - Referenced SOP Instance is not listed in CurrentRequestedProcedureEvidenceSequence or "
        "PertinentOtherEvidenceSequence but have IMAGE ReferencedSOPInstanceUID 2.25.1234567",
        "Error - Missing attribute Type 2 Required Element=<Manufacturer> Module=<GeneralEquipment>",
        "Error - Missing attribute Type 1C Conditional Element=<CodingSchemeDesignator> "
        "Module=<BasicCodeSequenceMacro>",
        "(0x7fe1,0x1010) SQ ? Error - Value Representation for PixelData is not Other Byte or Other Word",
        "(0x0029,0x1010)  ?  - Warning - Unrecognized tag - assuming explicit value representation OK",
        "Warning - Value is zero for value 1 of attribute <Patient's Weight>",
    ])
    assert error_lines(stderr) == {
        'Error - Illegal root for UID - "…" in (0x0008,0x1155) Referenced SOP Instance UID',
        "Error - Value invalid for this VR - (0x0010,0x0010) PN Patient's Name PN [#] = <…> - "
        "Length invalid for this VR = #, expected <= #",
        "Error - Referenced SOP Instance is not listed in CurrentRequestedProcedureEvidenceSequence or "
        "PertinentOtherEvidenceSequence but have IMAGE ReferencedSOPInstanceUID #",
        "Error - Missing attribute Type 2 Required Element=<Manufacturer> Module=<GeneralEquipment>",
        "Error - Missing attribute Type 1C Conditional Element=<CodingSchemeDesignator> "
        "Module=<BasicCodeSequenceMacro>",
        "(0x7fe1,0x1010) Error - Value Representation for PixelData is not Other Byte or Other Word",
    }
    # The same error quoting other values is the same error; another Type or attribute is not.
    assert error_lines('Error - Illegal root for UID - "1.2.3" in (0x0008,0x1155) Referenced SOP Instance UID') \
        <= error_lines(stderr)
    assert not error_lines("Error - Missing attribute Type 1 Required Element=<Manufacturer> "
                           "Module=<GeneralEquipment>") <= error_lines(stderr)


@pytest.mark.parametrize("profile_name", list(PROFILES))
@pytest.mark.parametrize("source", SOURCES)
def test_deidentified_output_has_no_new_dciodvfy_errors(source: str, profile_name: str, planted_dir: Path,
                                                        tmp_path: Path) -> None:
    require_dciodvfy()
    src = source_path(source, planted_dir)
    before = validate_input(src)
    assert before.completed, f"dciodvfy did not complete on the input {source}: {before.describe()}"

    result = deidentify_file(src, tmp_path / "out", Profile(Pseudonymizer(KEY), PROFILES[profile_name]))
    assert result.status == "accepted", f"{source} was refused: {result.reason}"
    assert result.output is not None
    assert result.output.is_file()

    after = Validation(result.output)
    assert after.completed, f"dciodvfy did not complete on the output of {source}: {after.describe()}"
    assert after.iods == before.iods, "dciodvfy validated the output against another IOD than the input"

    new = sorted(after.errors - before.errors)
    assert not new, (f"de-identifying {source} under {profile_name} added {len(new)} dciodvfy error(s):\n"
                     + "\n".join(new))
