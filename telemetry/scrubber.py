"""Patient data out of log lines, before anything is queued.

Log lines of a modality carry patient data in a handful of usual forms; each built-in rule removes one of
them (the value is replaced by `REMOVED`, the rest of the line stays readable):

1. DICOM attribute dumps of patient, visit and staff attributes: `(0010,0010) PN [DOE^JOHN]`.
2. HL7 v2 PID segments: patient identifiers, name, birth date and address fields.
3. Person names in DICOM form anywhere: `FAMILY^GIVEN[^MIDDLE...]`, with ideographic and phonetic groups
   (`TANAKA^HIROSHI=田中^宏=たなか^ひろし`).
4. Key-value pairs whose key names patient data (`PatientName=`, `Patient ID:`, `"patient_id": "..."`,
   `MRN 556677`, `AccessionNumber=`, `DOB 12/24/1961`, `birthdate = '...'`...), in `=`, `:` and JSON
   forms; generic keys (`name`, `id`) only with a quoted value.
5. An ID following "patient" in the same clause (`for patient X (ID 4411)`), and a quoted text following
   "patient" (`for patient 'Garcia Lopez, Maria'`).
6. Export folder and file names made of a name and a birth date (`SMITH_JOHN_19700101`).

Plus the site's own patterns (`[telemetry] scrub_patterns`, regular expressions): every match is removed.
What the rules miss on the labelled corpus (tests/data/log_corpus.jsonl) is listed in docs/telemetry.md,
and the tests measure recall and false positives on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REMOVED = "REMOVED"

_LETTER = r"[^\W\d_]"
_NAME_PART = rf"{_LETTER}(?:{_LETTER}|['’.-])*"  # a name component: letters, apostrophes, hyphens, dots
_PN_GROUP = rf"{_NAME_PART}(?:\^(?:{_NAME_PART})?)+"  # at least FAMILY^GIVEN
_PN = rf"(?<![\w^]){_PN_GROUP}(?:={_PN_GROUP})*(?![\w^])"

# (gggg,eeee) of the attributes whose values identify the patient (and staff names) in a DICOM dump.
_DUMP_TAGS = ("0010,....", "0008,0050", "0008,0080", "0008,0081", "0008,0090", "0008,1048", "0008,1050",
              "0008,1060", "0008,1070", "0032,1032", "0038,0010", "0040,2016", "0040,2017", "0040,a123")
_DUMP = re.compile(rf"(\((?:{'|'.join(_DUMP_TAGS)})\)\s+[A-Z]{{2}}\s+\[)([^\]]*)(\])", re.IGNORECASE)

# Keys that always name patient data; the value after `=`, `:` or `[` (or, for the short keys that are never
# followed by an ordinary word, after a space) is removed. A name or a birth date may be several words
# ("John Smith", "24 Dec 1961"): their value runs to the next delimiter or the next key; an ID is one token.
_NAME_KEYS = (r"patient'?s?[ _]?name", r"patient[ _]?birth[ _]?date", r"birth[ _]?date", r"date[ _]?of[ _]?birth")
_ID_KEYS = (r"patient'?s?[ _]?id", r"other[ _]?patient[ _]?ids?", r"accession[ _]?(?:number|no)?")
_SHORT_KEYS = (r"dob", r"mrn", r"pid", r"medical[ _]?record[ _]?(?:number|no)")
_QUOTED = r"\"[^\"]*\"|'[^']*'"
_SEPARATOR = r"(?:\"|')?\s*(?:[=:]\s*\[?|\[)"
_WORDS = rf"(?:{_QUOTED}|[^\s,;()\]=:|]+(?:[ \t](?![\w.'-]+\s*[=:])[^\s,;()\]=:|]+)*)"  # up to a delimiter or key
_TOKEN = rf"(?:{_QUOTED}|[^\s,;()\]]+)"
_KEY_VALUE = re.compile(
    rf"(?<![\w])((?:\"|')?(?:{'|'.join(_NAME_KEYS)}){_SEPARATOR})({_WORDS})"
    rf"|(?<![\w])((?:\"|')?(?:{'|'.join(_ID_KEYS)}){_SEPARATOR}|(?:{'|'.join(_SHORT_KEYS)})\s*[=:]?\s*\[?)({_TOKEN})",
    re.IGNORECASE)
_GENERIC_QUOTED = re.compile(rf"(?<![\w])((?:\"|')?(?:name|id)(?:\"|')?\s*(?:=|:|\bLIKE\b)\s*)({_QUOTED})",
                             re.IGNORECASE)
_PATIENT_ID = re.compile(r"(\bpatient\b[^.;\n]{0,40}?\bID\b\s*[=:]?\s*)([\w-]+)", re.IGNORECASE)
_PATIENT_QUOTED = re.compile(rf"(\bpatient\s+)({_QUOTED})", re.IGNORECASE)
_NAME_AND_BIRTH = re.compile(r"\b[A-Z]{2,}(?:_[A-Z]{2,})+_(?:19|20)\d{6}\b")
_HL7_PID_FIELDS = (2, 3, 4, 5, 6, 7, 11, 13, 14, 18, 19)  # IDs, name, mother's name, birth date, address, phones


class Scrubber:
    """`scrub(line)` removes patient data; `extra` are the site's own regular expressions."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.extra = [re.compile(pattern) for pattern in extra]

    def scrub(self, line: str) -> str:
        line = _scrub_hl7(line)
        line = _DUMP.sub(lambda m: f"{m.group(1)}{REMOVED}{m.group(3)}" if m.group(2).strip() else m.group(0), line)
        line = _KEY_VALUE.sub(_keep_key, line)
        line = _GENERIC_QUOTED.sub(_keep_key, line)
        line = _PATIENT_QUOTED.sub(_keep_key, line)
        line = _PATIENT_ID.sub(_keep_key, line)
        line = re.sub(_PN, REMOVED, line)
        line = _NAME_AND_BIRTH.sub(REMOVED, line)
        for pattern in self.extra:
            line = pattern.sub(REMOVED, line)
        return line


def _keep_key(match: re.Match[str]) -> str:
    """The key as it was, its value replaced (the key is group 1 and the value group 2, or 3 and 4)."""
    key, value = (match.group(1), match.group(2)) if match.group(1) is not None else (match.group(3), match.group(4))
    if value.strip("\"'") == REMOVED:
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{key}{quote}{REMOVED}{quote}"


def _scrub_hl7(line: str) -> str:
    """The identifying fields of HL7 v2 PID segments (segments are separated by carriage returns)."""
    if "PID|" not in line:
        return line
    segments = line.split("\r")
    for index, segment in enumerate(segments):
        start = segment.find("PID|")
        if start < 0:
            continue
        head, fields = segment[:start], segment[start:].split("|")
        for number in _HL7_PID_FIELDS:
            if number < len(fields) and fields[number]:
                fields[number] = REMOVED
        segments[index] = head + "|".join(fields)
    return "\r".join(segments)


def validate(patterns: Iterable[str]) -> list[str]:
    """The patterns that are not valid regular expressions, each with the reason (for the configuration check)."""
    problems = []
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"{pattern!r}: {exc}")
    return problems
