"""The verification pass: a second, independent look at every output before it may leave.

It recomputes the identifying values from the *input* (not from anything `deidentify` kept) and
searches the output for them twice: in the parsed dataset (every element at every depth, the file
meta information and private blocks included) and in the encoded bytes outside the pixel data,
in every character set the dataset declares. Any hit refuses the output. The refusal names where
the value was found, never the value itself, so the reason can be logged and shown safely.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset, FileMetaDataset

from anonymizer.errors import Refused
from anonymizer.values import PIXEL_TAGS, IdentifyingValues, cached_encodings, element_hits, tolerant, walk


def check(values: IdentifyingValues, output: Dataset) -> None:
    """Raise Refused when `output` holds any of `values` (the input's identifying values)."""
    with tolerant():
        places = parsed_hits(values, output) + byte_hits(values, output)
    if places:
        shown = ", ".join(places[:5]) + (f" and {len(places) - 5} more" if len(places) > 5 else "")
        raise Refused(f"verification found identifying values of the input in the output at {shown}")


def parsed_hits(values: IdentifyingValues, output: Dataset) -> list[str]:
    hits = []
    encodings: dict[int, list[str]] = {}  # per dataset (item), computed once
    for path, ds, elem in walk(output):
        if element_hits(elem, values, cached_encodings(encodings, ds)):
            hits.append(f"{path}{elem.tag}")
    return hits


def byte_hits(values: IdentifyingValues, output: Dataset) -> list[str]:
    """Encode the output without its pixel data and search the bytes, in the declared character sets."""
    tags = output.keys()  # (iterating a Dataset itself would convert every element)
    stripped = Dataset({tag: output.get_item(tag) for tag in tags if tag not in PIXEL_TAGS})
    implicit, little = output.original_encoding
    if implicit is not None and little is not None:
        stripped.set_original_encoding(implicit, little, output.original_character_set)
    meta = getattr(output, "file_meta", None)
    buffer = io.BytesIO()
    if meta is not None and "TransferSyntaxUID" in meta:
        stripped.file_meta = FileMetaDataset(meta)  # encode as the output will be: same transfer syntax
        pydicom.dcmwrite(buffer, stripped)
    else:
        pydicom.dcmwrite(buffer, stripped, implicit_vr=False, little_endian=True)
    encodings = charset_encodings(output)
    found = values.hits_in_bytes(buffer.getvalue(), encodings)
    preamble = getattr(output, "preamble", None)
    if preamble:
        found |= values.hits_in_bytes(preamble, encodings)
    return ["encoded bytes"] if found else []


def charset_encodings(output: Dataset) -> list[str]:
    """The encodings text can have in the output's bytes: UTF-8, Latin-1 and every declared character set."""
    charsets = output.get("SpecificCharacterSet", "ISO_IR 6")
    declared = convert_encodings(list(charsets) if not isinstance(charsets, str) else [charsets])
    return list(dict.fromkeys(["utf-8", "latin-1", *declared]))


def file_hits(values: IdentifyingValues, path: Path, *, skip: Iterable[tuple[int, int]] = (),
              encodings: Iterable[str] = ("utf-8",), chunk_bytes: int = 1024 * 1024) -> list[str]:
    """Search a written file's bytes for `values`, outside the `skip` ranges (pixel data values, [start, end)).

    The file is read one chunk at a time, each searched together with the end of the previous one (as
    long as the longest encoded value), so a value split across two chunks is still found and memory does
    not grow with the file. Returns the byte ranges holding a hit, never the values.
    """
    encodings = list(encodings)
    lengths = [len(v.lower().encode(e)) for v in values.long for e in encodings if _encodable(v, e)]
    overlap = max(lengths, default=1) - 1
    size = path.stat().st_size
    regions, position = [], 0
    for start, end in sorted(skip):
        if start > position:
            regions.append((position, start))
        position = max(position, end)
    if position < size:
        regions.append((position, size))
    places = []
    with open(path, "rb") as fh:
        for start, end in regions:
            fh.seek(start)
            carry, offset = b"", start
            while offset < end:
                chunk = fh.read(min(chunk_bytes, end - offset))
                if not chunk:
                    break
                window = carry + chunk
                if values.hits_in_bytes(window, encodings):
                    places.append(f"file bytes {offset - len(carry)}-{offset + len(chunk)}")
                    break
                offset += len(chunk)
                carry = window[len(window) - overlap:] if overlap else b""
    return places


def _encodable(value: str, encoding: str) -> bool:
    try:
        value.lower().encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True
