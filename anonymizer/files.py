"""`deidentify_file`: one DICOM file in; one verified, de-identified file out, or a refusal. In constant memory.

How a file goes through, and why each step is there:

1. **Read** with `dcmread(defer_size=DEFER_BYTES)`: every value larger than that stays on disk, so the pixel
   data of a 1 GB multi-frame file is never loaded (`deidentify` never touches it, see `values.PIXEL_TAGS`).
   Input that is not DICOM, truncated or malformed is refused with a reason; it never raises.
2. **De-identify** with the pure `deidentify`, which returns a copy in which the pixel data is still the
   input's raw, deferred element: its position (`value_tell`) and length in the source file.
3. **Write** a temporary file in the destination folder, in the input's transfer syntax: pydicom writes
   the preamble (zeroed), the regenerated file meta and the elements before the pixel data (an element the
   de-identification left as it was is written from its raw bytes, never decoded); the pixel data
   element's header is encoded here and its value is copied from the source file inside the kernel
   (`copy_file_range`; in `COPY_CHUNK_BYTES` chunks through memory where the file systems cannot); pydicom
   writes the elements after it (private groups such as 7FE1 and the Digital Signatures Sequence, already
   de-identified) onto the same file. This is why memory does not grow with the file.
   Encapsulated (compressed) pixel data has an undefined length: its items are walked, header by header,
   to the sequence delimiter, and exactly that byte range is copied. When a pixel-cleaning rule applied
   (Clean Pixel Data, `anonymizer.pixels`), each chunk has the rule's rectangles zeroed as it passes, in
   every frame; the plan is a few numbers per frame, so memory stays constant here too.
4. **Verify** the written file before it gets its name, independently of `deidentify`: the identifying
   values are recomputed from the *input*; the temporary file is parsed back and searched
   (`verify.parsed_hits`), and its raw bytes outside the pixel data values are searched in chunks
   (`verify.file_hits`). Any hit deletes the temporary file and refuses the input. The disk is already
   writing the file meanwhile (write-back is started before the verification).
5. **Publish**: fdatasync the file (its bytes are on disk), rename it to `OUT/<study>/<series>/<instance>.dcm`
   (named by the de-identified UIDs: input file names often carry the patient's name), fsync its folders
   (a batch does that once per folder, at its end). A crash at any point leaves nothing under the final
   name; only a hidden `.*.partial` file can remain after a hard kill.

Refusal reasons name places and causes, never values, and never the file's path (which can carry a name):
they go to stderr, the batch report and the quarantine record.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filebase import DicomBytesIO, DicomFileLike, DicomIO
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from anonymizer import verify
from anonymizer.deidentify import Profile, deidentify, identifying_values
from anonymizer.errors import Refused
from anonymizer.pixels import PIXEL_DATA, BlankPlan
from anonymizer.profile import RuleTable
from anonymizer.pseudonyms import fsync_dir
from anonymizer.values import PIXEL_TAGS, IdentifyingValues

DEFER_BYTES = 64 * 1024  # values larger than this stay on disk while the file is read
COPY_CHUNK_BYTES = 1024 * 1024
FSYNC_THREADS = 8  # pixel data is copied, and the written file searched, in chunks of this size

UNDEFINED_LENGTH = 0xFFFFFFFF
# copy_file_range cannot copy between these files (other file systems, an old kernel): copy through memory.
_NO_COPY_FILE_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF})
_ITEM, _ITEM_DELIMITER, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "UN"})
_UID_NAME = re.compile(r"[0-9]+(\.[0-9]+)*")  # a UID is a safe file name; nothing else is used as one
# Exceptions pydicom and the struct module raise on damaged input. TypeError and AttributeError are left
# out on purpose: they mean a bug here, and a bug must be seen, not filed as a refused input.
T = TypeVar("T")
_MALFORMED = (ValueError, KeyError, IndexError, struct.error, OverflowError, UnicodeError, NotImplementedError,
              BytesLengthException)


@dataclass(frozen=True)
class FileResult:
    """What became of one input file. Holds no patient data (`source` is the site's own local path)."""

    source: Path
    status: Literal["accepted", "refused"]
    output: Path | None  # OUT/<study>/<series>/<instance>.dcm when accepted
    reason: str | None  # why it was refused: places and causes, never values
    bytes_in: int
    report: dict[str, Any] = field(default_factory=dict)  # Report.to_dict() when deidentify ran
    quarantined: Path | None = None  # the quarantine record, when refused and a quarantine folder was given

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "status": self.status,
                "output": str(self.output) if self.output else None, "reason": self.reason,
                "bytes_in": self.bytes_in, "report": self.report,
                "quarantined": str(self.quarantined) if self.quarantined else None}


def deidentify_file(src: Path, out_dir: Path, profile: Profile, *, quarantine_dir: Path | None = None,
                    sync_folders: bool = True) -> FileResult:
    """De-identify the DICOM file `src` into `out_dir`, verified, or refuse it (and quarantine the refusal).

    The output file is on disk before it gets its name. Its folders are fsynced too, so that the name is
    durable when this returns, unless `sync_folders` is False: a batch does that once per folder at its
    end (`output_folders`), which spares a disk flush per file and changes nothing about partial files.

    Never raises for bad input: a non-DICOM, truncated or malformed file, or one that must not leave, comes
    back refused. Errors of the output side (disk full, no permission on `out_dir`) do raise OSError: they
    are not a property of the input, and every following file would fail alike. The source file is only
    ever opened for reading.
    """
    src = Path(src)
    bytes_in = 0
    report: dict[str, Any] = {}
    try:
        try:
            state = os.stat(src)
        except OSError as exc:
            raise Refused(f"unreadable: {exc.strerror or type(exc).__name__}") from None
        bytes_in = state.st_size
        # A damaged value is the input's property: it is processed or refused, and the result says which.
        # pydicom's per-value warnings would only flood a batch's stderr.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            source = _read(src, state.st_size)
            # The identifying values come from the input before it is de-identified in place.
            values = _phase("cannot be de-identified",
                            lambda: identifying_values(source, profile, RuleTable.load()))
            out, deidentify_report = _phase("cannot be de-identified",
                                            lambda: deidentify(source, profile, in_place=True, values=values))
            report = deidentify_report.to_dict()
            output = _write_verified(src, state, out, values, out_dir, deidentify_report.pixel_plan)
            if sync_folders:
                for folder in output_folders(out_dir, output):
                    fsync_dir(folder)
    except Refused as exc:
        record = _quarantine(src, exc.reason, report, quarantine_dir) if quarantine_dir is not None else None
        return FileResult(src, "refused", None, exc.reason, bytes_in, report, record)
    return FileResult(src, "accepted", output, None, bytes_in, report, None)


# ---- reading --------------------------------------------------------------------------------------

def _read(src: Path, size: int) -> Dataset:
    """The input, large values deferred; refused when it is not a complete, composite DICOM instance."""
    try:
        try:
            dataset = pydicom.dcmread(src, defer_size=DEFER_BYTES)
        except InvalidDicomError:
            if not _starts_like_a_dataset(src):
                raise Refused("not a DICOM file: no 'DICM' prefix after a 128-byte preamble, and the content "
                              "does not start like a DICOM data set") from None
            # A data set without the Part 10 header (older exports): readable, and it gets a header on output.
            dataset = pydicom.dcmread(src, defer_size=DEFER_BYTES, force=True)
    except EOFError as exc:
        raise Refused(f"truncated: {_describe(exc)}") from None
    except OSError as exc:
        raise Refused(f"unreadable: {exc.strerror or type(exc).__name__}") from None
    except _MALFORMED as exc:
        raise Refused(f"unreadable: malformed DICOM ({_describe(exc)})") from None
    _check_transfer_syntax(dataset)
    _check_complete(dataset, size)
    if not dataset.get("SOPClassUID") or not dataset.get("SOPInstanceUID"):
        raise Refused("not a composite DICOM instance: no SOP Class UID or SOP Instance UID "
                      "(a DICOMDIR, a bare data set or a damaged file); nothing to send")
    # An image always has pixel data: without it, the file was cut exactly between two elements.
    image = "Rows" in dataset or "Image Storage" in UID(str(dataset.SOPClassUID)).name
    if image and not any(tag in dataset for tag in PIXEL_TAGS):
        raise Refused("truncated: an image without pixel data")
    return dataset


def _starts_like_a_dataset(src: Path) -> bool:
    with open(src, "rb") as fh:
        head = fh.read(4)
    # Group 0008 (or a file meta group 0002 without preamble), little or big endian.
    return len(head) == 4 and head[:2] in (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02")


def _check_complete(dataset: Dataset, size: int) -> None:
    """pydicom reads a file cut short without complaint (a deferred value is skipped by seeking, a cut
    element header ends the data set): find the cut from the lengths instead."""
    last_end: int | None = None
    for tag in sorted(dataset.keys()):
        elem = dataset.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement) and elem.length != UNDEFINED_LENGTH:
            last_end = elem.value_tell + elem.length
            if last_end > size:
                raise Refused(f"truncated: element {BaseTag(tag)} needs {last_end - size} bytes more than "
                              f"the file has")
        else:
            last_end = None  # a parsed sequence: its end is not known here
    if last_end is not None and last_end < size:
        raise Refused(f"truncated: the file ends inside an element header ({size - last_end} bytes after "
                      f"the last complete element)")


def _check_transfer_syntax(dataset: Dataset) -> None:
    meta = dataset.file_meta
    syntax = meta.get("TransferSyntaxUID")
    if syntax == DeflatedExplicitVRLittleEndian:
        raise Refused("Deflated Explicit VR Little Endian is not supported: its bytes cannot be searched as "
                      "written; export the file uncompressed")
    if syntax is not None and not UID(syntax).is_transfer_syntax:
        raise Refused("unknown (private) transfer syntax: the file cannot be rewritten safely")
    if syntax is None:  # a missing Transfer Syntax UID: the encoding pydicom detected, if that says all
        pixels = dataset.get_item(0x7FE00010, keep_deferred=True)
        if isinstance(pixels, RawDataElement) and pixels.length == UNDEFINED_LENGTH:
            raise Refused("no Transfer Syntax UID and compressed pixel data: the compression is unknown")
        implicit, little = dataset.original_encoding
        meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


# ---- writing --------------------------------------------------------------------------------------

def output_path(out_dir: Path, dataset: Dataset) -> Path:
    """OUT/<study>/<series>/<instance>.dcm from the (de-identified) UIDs of `dataset`."""
    study = _uid_name(dataset.get("StudyInstanceUID"), "unknown-study", "Study Instance UID")
    series = _uid_name(dataset.get("SeriesInstanceUID"), "unknown-series", "Series Instance UID")
    instance = _uid_name(dataset.get("SOPInstanceUID"), None, "SOP Instance UID")
    return out_dir / study / series / f"{instance}.dcm"


def _uid_name(value: object, missing: str | None, what: str) -> str:
    text = str(value or "").strip("\0 ")
    if not text and missing is not None:
        return missing
    if not _UID_NAME.fullmatch(text) or len(text) > 64:
        raise Refused(f"the output's {what} is not a valid UID, so it cannot name the output file")
    return text


def _write_verified(src: Path, state: os.stat_result, out: Dataset, values: IdentifyingValues,
                    out_dir: Path, plan: BlankPlan | None = None) -> Path:
    """Write `out` to a temporary file next to its final name, verify it, then rename it into place."""
    final = output_path(out_dir, out)
    _make_dirs(final.parent)
    descriptor, temp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial")
    temp = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb") as fh:
            skip = _phase("cannot be written", lambda: _write(fh, out, src, state, plan))
            fh.flush()
            # Start writing it to disk now, so the disk works while the file is verified; fdatasync below
            # then waits only for what is left. (DONTNEED starts write-back; dirty pages stay cached.)
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            _verify(temp, values, out, skip)
            os.fdatasync(fh.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return final


def output_folders(out_dir: Path, output: Path) -> list[Path]:
    """The folders whose entries name `output` (`OUT/<study>/<series>/`, `OUT/<study>/`, `OUT/`): fsynced,
    they make its name durable."""
    folders = [output.parent]
    while folders[-1] != out_dir and folders[-1].parent != folders[-1] and folders[-1].is_relative_to(out_dir):
        folders.append(folders[-1].parent)
    return folders


def _write(fh: BinaryIO, out: Dataset, src: Path, state: os.stat_result,
           plan: BlankPlan | None = None) -> list[tuple[int, int]]:
    """Encode `out` into `fh`, pixel data values copied from `src` (Pixel Data blanked by `plan`, if given).
    Returns the byte ranges of those values."""
    fp = DicomFileLike(fh)
    tags = sorted(out.keys())
    bulk = [tag for tag in tags if tag in PIXEL_TAGS]
    first = bulk[0] if bulk else None
    fp.write(b"\0" * 128 + b"DICM")  # the preamble, zeroed: the input's may carry anything
    write_file_meta_info(fp, out.file_meta, enforce_standard=True)
    syntax = UID(out.file_meta.TransferSyntaxUID)
    fp.is_implicit_VR, fp.is_little_endian = syntax.is_implicit_VR, syntax.is_little_endian
    charset = out.get("SpecificCharacterSet", default_encoding)
    _encode(fp, _part(out, [t for t in tags if first is None or t < first]), charset)
    if not bulk:
        return []
    ranges: list[tuple[int, int]] = []
    try:
        source = open(src, "rb")  # noqa: SIM115 - the with below closes it; only opening is guarded
    except OSError as exc:
        raise Refused(f"unreadable: {exc.strerror or type(exc).__name__}") from None
    with source:
        for index, tag in enumerate(bulk):
            ranges.append(_write_bulk(fp, fh, source, out.get_item(tag, keep_deferred=True),
                                      plan if tag == PIXEL_DATA else None))
            upto = bulk[index + 1] if index + 1 < len(bulk) else None
            rest = [t for t in tags if t > tag and (upto is None or t < upto)]
            if rest:  # the elements after the pixel data, in the same encoding and character set
                _encode(fp, _part(out, rest), charset)
        now = os.fstat(source.fileno())
    if (now.st_size, now.st_mtime_ns) != (state.st_size, state.st_mtime_ns):
        raise Refused("the input file changed while it was being de-identified; send it again when it is complete")
    return ranges


def _encode(fp: DicomIO, dataset: Dataset, parent_charset: str | list[str]) -> None:
    """pydicom's `write_dataset`, with a shorter path for what de-identification leaves: an element still in
    its raw form (kept or never touched) is written as the bytes it was read as, without pydicom's checks
    and buffering per element; the bytes are the same as pydicom's. When the dataset's encoding or character
    set is not the output's, pydicom's own re-encoding is used."""
    if dataset.original_encoding != (fp.is_implicit_VR, fp.is_little_endian) or \
            dataset.original_character_set != dataset._character_set:
        write_dataset(fp, dataset, parent_encoding=parent_charset)
        return
    charset = dataset.get("SpecificCharacterSet", parent_charset)
    for tag, elem in sorted(dataset.items(), key=lambda item: item[0]):
        if tag.element == 0 and tag.group > 6:
            continue  # group lengths are retired (PS3.5 7.2), and pydicom leaves them out too
        if isinstance(elem, RawDataElement) and elem.value is None:
            elem = dataset.get_item(tag)  # a value still on disk (over DEFER_BYTES): read now
        if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes) and \
                elem.length != UNDEFINED_LENGTH and (fp.is_implicit_VR or len(elem.VR or "") == 2):
            _write_raw(fp, elem)
        elif isinstance(elem, DataElement) and elem.VR == "SQ":
            _write_sequence(fp, elem, charset)
        else:
            write_data_element(fp, elem, charset)


def _write_sequence(fp: DicomIO, elem: DataElement, charset: str | list[str]) -> None:
    """A sequence and its items, with the lengths pydicom would give them: undefined where they were read so,
    else counted (in a buffer for the sequence, by seeking back for an item), as pydicom's writer does."""
    fp.write_tag(elem.tag)
    if not fp.is_implicit_VR:
        fp.write(b"SQ\0\0")
    if elem.is_undefined_length:
        fp.write_UL(UNDEFINED_LENGTH)
        _write_items(fp, elem.value, charset)
        fp.write_tag(_SEQUENCE_DELIMITER)
        fp.write_UL(0)
        return
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = fp.is_little_endian, fp.is_implicit_VR
    _write_items(buffer, elem.value, charset)
    fp.write_UL(buffer.tell())
    fp.write(buffer.getvalue())


def _write_items(fp: DicomIO, items: Iterable[Dataset], charset: str | list[str]) -> None:
    for item in items:
        fp.write_tag(_ITEM)
        length_at = fp.tell()
        fp.write_UL(UNDEFINED_LENGTH)
        _encode(fp, item, charset)
        if getattr(item, "is_undefined_length_sequence_item", False):
            fp.write_tag(_ITEM_DELIMITER)
            fp.write_UL(0)
        else:
            end = fp.tell()
            fp.seek(length_at)
            fp.write_UL(end - length_at - 4)
            fp.seek(end)


def _write_raw(fp: DicomIO, elem: RawDataElement) -> None:
    value = elem.value
    assert value is not None
    fp.write_tag(elem.tag)
    if fp.is_implicit_VR:
        fp.write_UL(len(value))
    elif elem.VR in EXPLICIT_VR_LENGTH_32:
        fp.write(str(elem.VR).encode("ascii") + b"\0\0")
        fp.write_UL(len(value))
    else:
        fp.write(str(elem.VR).encode("ascii"))
        fp.write_US(len(value))
    fp.write(value)


def _part(out: Dataset, tags: list[BaseTag]) -> Dataset:
    """Some of `out`'s elements, as they are (raw elements stay raw), with `out`'s original encoding."""
    part = Dataset({tag: out.get_item(tag, keep_deferred=True) for tag in tags})
    implicit, little = out.original_encoding
    part.set_original_encoding(implicit, little, out.original_character_set)
    return part


def _write_bulk(fp: DicomFileLike, fh: BinaryIO, source: BinaryIO, elem: DataElement | RawDataElement,
                plan: BlankPlan | None = None) -> tuple[int, int]:
    """Write one pixel data element, `plan`'s bytes zeroed; return the byte range of its value in the output."""
    if not isinstance(elem, RawDataElement):
        # Changed in memory (`deidentify` blanked it already): pydicom encodes it like any element.
        if not isinstance(elem.value, bytes):
            raise Refused(f"{elem.tag} is not a byte value (damaged pixel data)")
        start = fh.tell()
        write_data_element(fp, elem)
        header = 8 if fp.is_implicit_VR else 12
        return start + header, fh.tell()
    # The input's own element: its value is still in the source file, at value_tell.
    if elem.is_little_endian != fp.is_little_endian:
        raise Refused(f"{elem.tag}: byte order differs from the transfer syntax (damaged file)")
    if elem.length == UNDEFINED_LENGTH:
        if plan is not None:  # blank_plan refuses compressed data; this is only a second lock
            raise Refused("Clean Pixel Data needs uncompressed pixel data")
        length = _encapsulated_length(source, elem.value_tell, elem.is_little_endian)
    else:
        length = elem.length
    fp.write_tag(elem.tag)
    if not fp.is_implicit_VR:
        fp.write(_bulk_vr(elem).encode("ascii"))
        fp.write_US(0)  # reserved
    fp.write_UL(elem.length)
    start = fh.tell()
    if plan is None:
        _copy_range(source, fh, elem.value_tell, length)
    else:
        _copy_blanked(source, fh, elem.value_tell, length, plan)
    return start, fh.tell()


def _bulk_vr(elem: RawDataElement) -> str:
    vr = elem.VR or {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(elem.tag, "OB" if elem.length == UNDEFINED_LENGTH
                                                              else "OW")
    if vr not in _BULK_VRS:
        raise Refused(f"{elem.tag} has the value representation {vr}, not one pixel data can have (damaged file)")
    return vr


def _encapsulated_length(source: BinaryIO, start: int, little: bool) -> int:
    """Bytes from `start` to the end of the sequence delimiter of encapsulated pixel data (PS3.5 A.4),
    found by reading only the item headers."""
    header = struct.Struct("<HHL" if little else ">HHL")
    source.seek(start)
    position = start
    while True:
        raw = source.read(8)
        if len(raw) < 8:
            raise Refused("truncated: the file ends inside the compressed pixel data")
        group, element, length = header.unpack(raw)
        tag = group << 16 | element
        position += 8
        if tag == _SEQUENCE_DELIMITER:
            return position - start
        if tag != _ITEM or length == UNDEFINED_LENGTH:
            raise Refused(f"damaged compressed pixel data: ({group:04X},{element:04X}) where an item "
                          f"or the sequence delimiter belongs")
        position += length
        source.seek(position)


def _copy_range(source: BinaryIO, target: BinaryIO, start: int, length: int) -> None:
    """Copy `length` bytes of `source` from `start` to `target` inside the kernel (`copy_file_range`: the bytes
    never pass through this process), or one chunk in memory at a time where the file systems cannot."""
    target.flush()
    copied = 0
    try:
        while copied < length:
            count = os.copy_file_range(source.fileno(), target.fileno(), length - copied, start + copied)
            if count == 0:
                raise Refused("truncated: the file ends inside the pixel data")
            copied += count
    except OSError as exc:
        if exc.errno not in _NO_COPY_FILE_RANGE:
            raise
        target.seek(0, os.SEEK_END)
        _copy_blanked(source, target, start + copied, length - copied, None)
    target.seek(0, os.SEEK_END)  # the buffered file object learns where the descriptor now is


def _copy_blanked(source: BinaryIO, target: BinaryIO, start: int, length: int, plan: BlankPlan | None) -> None:
    """`_copy_range`, zeroing the bytes `plan` names (offsets within the copied range) in each chunk as it
    passes; a range may span two chunks, and `plan.apply` clips it to each."""
    source.seek(start)
    remaining = length
    while remaining:
        chunk = source.read(min(COPY_CHUNK_BYTES, remaining))
        if not chunk:
            raise Refused("truncated: the file ends inside the pixel data")
        target.write(plan.apply(chunk, length - remaining) if plan is not None else chunk)
        remaining -= len(chunk)


# ---- verification and publishing ------------------------------------------------------------------

def _verify(temp: Path, values: IdentifyingValues, out: Dataset, skip: list[tuple[int, int]]) -> None:
    """The written file, parsed back and as bytes outside the pixel data, holds none of `values`."""
    written = _phase("the written file does not read back",
                     lambda: pydicom.dcmread(temp, defer_size=DEFER_BYTES))
    # The parsed file here, its bytes below: the encoded-bytes half of verify.check would encode the
    # dataset again only to search what the written file already is.
    parsed = verify.parsed_hits(values, written)
    if parsed:
        raise Refused(f"verification found identifying values of the input in the output at "
                      f"{', '.join(parsed[:5])}")
    for tag, (start, _) in zip([t for t in sorted(PIXEL_TAGS) if t in written], skip, strict=False):
        elem = written.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement) and elem.value_tell != start:
            raise Refused("the written file does not read back as written (pixel data out of place)")
    places = verify.file_hits(values, temp, skip=skip, encodings=verify.charset_encodings(out))
    if places:
        raise Refused(f"verification found identifying values of the input in the written file at "
                      f"{', '.join(places[:5])}")


def _make_dirs(directory: Path) -> list[Path]:
    """Create `directory` and missing parents (0700); return those created, outermost first."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another worker made it a moment ago
            path.mkdir(mode=0o700)
    return list(reversed(missing))


def fsync_folders(folders: Iterable[Path]) -> None:
    """fsync each folder once (see `output_folders`), several at a time: the file system commits the waiting
    ones together, so a thousand folders cost a few disk flushes, not a thousand."""
    with ThreadPoolExecutor(max_workers=FSYNC_THREADS) as pool:
        list(pool.map(fsync_dir, dict.fromkeys(folders)))  # list(): the first error is raised here


def _quarantine(src: Path, reason: str, report: dict[str, Any], quarantine_dir: Path) -> Path:
    """Record a refusal: quarantine_dir/<sha256 of the absolute source path>.json, 0600.

    The record holds the source path, the reason, the time and the report: no value from the file. The path
    is the site's own and may carry a patient's name, which is acceptable on the device; quarantine records
    are never uploaded, and the quarantine folder must never be inside the output folder that leaves.
    """
    absolute = str(src.absolute())
    record = quarantine_dir / f"{hashlib.sha256(absolute.encode('utf-8', 'surrogateescape')).hexdigest()}.json"
    created = _make_dirs(quarantine_dir)
    body = json.dumps({"source": str(src), "reason": reason, "time": datetime.now(UTC).isoformat(),
                       "report": report}, indent=2, ensure_ascii=False)
    descriptor, temp_name = tempfile.mkstemp(dir=quarantine_dir, prefix=".", suffix=".partial")  # 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(body + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp_name, record)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    fsync_dir(quarantine_dir)
    for directory in created:
        fsync_dir(directory.parent)
    return record


# ---- small helpers --------------------------------------------------------------------------------

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|b'[^']*'")


def _describe(exc: BaseException) -> str:
    """An exception for a refusal reason: its type and message, quoted parts (which may be values) cut."""
    lines = str(exc).splitlines()
    text = _QUOTED.sub("'...'", lines[0])[:160] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _phase(what: str, step: Callable[[], T]) -> T:
    """Run `step`; damaged input it trips over becomes a refusal that says in which phase."""
    try:
        return step()
    except EOFError as exc:
        raise Refused(f"truncated: {_describe(exc)}") from None
    except _MALFORMED as exc:
        raise Refused(f"{what}: {_describe(exc)}") from None
