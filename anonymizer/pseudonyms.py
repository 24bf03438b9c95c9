"""Keyed, deterministic pseudonyms: UIDs, Patient ID, Patient Name and a per-patient date offset.

Why keyed. PS3.15 Annex E lets a de-identifier replace UIDs, IDs and names by values derived from the
originals, and warns that a plain hash of an identifier can be undone by anyone who can enumerate the
inputs. Those inputs are small: a UID is an organisation root plus a timestamp and a counter, a medical
record number is a few digits. Hashing every candidate and comparing is a dictionary attack that runs in
minutes. Every value here is therefore an HMAC-SHA-256 under a per-site secret key (32 random bytes,
the full strength of SHA-256): without the key nobody can test a guess, with it the site gets the same
pseudonym for the same input on every file, run and machine that shares the key, so studies, series and
references stay linked.

Why a prefix per use. Each use hashes its own prefix (b"uid\\x00", b"patient-id\\x00", ...) before the
input, so a Patient ID and a UID with the same text give unrelated outputs, and one output never reveals
anything about another kind.

Why 2.25 and 128 bits. The 2.25 arc (ITU-T X.667) holds 128-bit UUID integers and needs no registered
organisation root, so generated UIDs cannot be traced to this site or vendor by their prefix. 128 bits is
what that arc carries: the decimal has at most 39 digits, the UID at most 44 characters (DICOM allows 64),
and a collision is expected only after about 2**64 distinct UIDs, far beyond any archive.

The key is stored in a file that is created once and never replaced automatically: a new key silently
changes every pseudonym, which would split one patient into two across exports.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import re
import secrets
import stat
import string
import tempfile
from datetime import date, timedelta
from pathlib import Path

# pydicom.uid re-exports the generated dictionary without listing it in __all__; this public path is the
# stable one (pydicom._uid_dict is private), so mypy's re-export check is silenced for this line only.
from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]

from anonymizer.errors import KeyFileError

KEY_BYTES = 32

# Date offsets lie this many whole days in the past: at least a year, so that no shifted date is the
# real one or close to it, and at most ten, so that ages computed from shifted dates stay plausible.
MIN_OFFSET_DAYS = 365
MAX_OFFSET_DAYS = 3650

# UI values are padded with NUL to an even length, text values with spaces; neither is part of the value.
_UID_PADDING = string.whitespace + "\x00"

# re.ASCII: \d would otherwise accept any Unicode digit (say Arabic-Indic), which no DICOM date uses.
_DA = re.compile(r"(\d{4})(\d{2})(\d{2})", re.ASCII)
# Before DICOM 3.0 dates were written yyyy.mm.dd; PS3.5 asks readers to accept them still.
_DA_ACR_NEMA = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})", re.ASCII)
# DT: YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]; the date part is shifted, the rest is kept as written.
_DT = re.compile(r"(\d{4})(?:(\d{2})(?:(\d{2})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?", re.ASCII)
_TM = re.compile(r"(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,6})?)?)?", re.ASCII)
# Before DICOM 3.0 times were written hh:mm:ss.frac; again PS3.5 asks readers to accept them.
_TM_ACR_NEMA = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?", re.ASCII)


def is_well_known(uid: str) -> bool:
    """True for UIDs the standard itself defines (SOP classes, transfer syntaxes, coding schemes,
    well-known frames of reference and SOP instances, ...). They identify no patient, device or
    site, and replacing them would make the file unreadable, so they are kept.

    Only exact entries of pydicom's UID dictionary count: a UID merely starting with the DICOM root
    1.2.840.10008 may still be an instance UID some vendor minted under it.
    """
    return uid.strip(_UID_PADDING) in UID_dictionary


class Pseudonymizer:
    """Keyed, deterministic replacements: the same input gives the same output with the same site key on any machine."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"the pseudonym key must be at least {KEY_BYTES} bytes, got {len(key)}")
        self._key = bytes(key)

    def __repr__(self) -> str:
        # Never show the key, not even in a traceback or a debug log.
        return "Pseudonymizer(key=<hidden>)"

    @classmethod
    def from_key_file(cls, path: Path, *, create: bool = True) -> Pseudonymizer:
        """Load the site key from `path`; create it first (32 random bytes, mode 0600) if missing and `create`.

        Refuses, with KeyFileError, a key file that group or others can read or write (the key would no
        longer be secret, and every pseudonym made with it could be reversed), one of the wrong length,
        and one that cannot be read.
        """
        try:
            return cls(_read_key_file(path))
        except FileNotFoundError:
            if not create:
                raise KeyFileError(
                    f"the pseudonym key file {path} does not exist. Restore it from the site's backup, "
                    "or allow it to be created (a new key gives new pseudonyms, unrelated to earlier exports)."
                ) from None
        _create_key_file(path)
        try:
            # Read back whichever key won: ours, or one another process published first.
            return cls(_read_key_file(path))
        except FileNotFoundError:
            if path.is_symlink():
                raise KeyFileError(
                    f"the pseudonym key file {path} is a symbolic link to a missing file. "
                    "Restore the file it points to from the site's backup, or remove the link."
                ) from None
            raise KeyFileError(
                f"the pseudonym key file {path} vanished right after it was created; "
                "check what else deletes files in that directory."
            ) from None

    def uid(self, original: str) -> str:
        """The pseudonym of a UID: `2.25.<decimal of the first 128 bits of the keyed HMAC>`.

        Well-known UIDs are kept; an empty value stays empty; a multi-valued value (backslash-separated)
        is mapped value by value, so that a UID maps the same whether it stands alone or in a list.
        """
        if "\\" in original:
            return "\\".join(self.uid(value) for value in original.split("\\"))
        value = original.strip(_UID_PADDING)
        if not value or value in UID_dictionary:
            return value
        number = int.from_bytes(self._digest(b"uid\x00", value)[:16], "big")
        # str() of an int never has a leading zero, and 0 prints as "0": every component stays valid.
        return f"2.25.{number}"

    def patient_id(self, original: str) -> str:
        """`SG-` and 16 uppercase hex digits (64 bits) of the keyed HMAC: 19 characters, within LO's 64.

        An empty Patient ID stays empty: giving it a pseudonym would invent one identity shared by every
        patient recorded without an ID.
        """
        value = original.strip()
        if not value:
            return ""
        return "SG-" + self._digest(b"patient-id\x00", value)[:8].hex().upper()

    def patient_name(self, patient_key: str) -> str:
        """`ANONYMOUS^` and 8 uppercase hex digits, a valid PN whose family name shows it is not a person.

        `patient_key` is the original Patient ID (the name when there is no ID), so that all studies of a
        patient carry the same pseudonymous name. 32 bits are enough to tell patients apart on a screen;
        the Patient ID pseudonym is the one that must not collide.
        """
        return "ANONYMOUS^" + self._digest(b"patient-name\x00", patient_key.strip())[:4].hex().upper()

    def date_offset(self, patient_key: str) -> timedelta:
        """Whole days between MIN_OFFSET_DAYS and MAX_OFFSET_DAYS into the past, the same for every date of
        one patient, so intervals between a patient's dates survive (Retain Longitudinal Temporal Information
        with Modified Dates) while the dates themselves do not."""
        span = MAX_OFFSET_DAYS - MIN_OFFSET_DAYS + 1
        # 64 bits reduced modulo a span of a few thousand: the bias is below 2**-50, invisible.
        draw = int.from_bytes(self._digest(b"date-offset\x00", patient_key.strip())[:8], "big")
        return timedelta(days=-(MIN_OFFSET_DAYS + draw % span))

    def shift_date(self, value: str, vr: str, patient_key: str) -> str:
        """Shift a DA, DT or TM value by the patient's date offset, keeping its precision and format.

        DA: YYYYMMDD (and the old YYYY.MM.DD), or a range A-B, -B, A-. DT: any precision from YYYY to
        YYYYMMDDHHMMSS.FFFFFF, with or without a UTC offset suffix; a partial date stands for its first
        day. TM: checked and returned unchanged, since a shift of whole days never changes a time of day.
        Backslash-separated values are shifted one by one; empty values stay empty.

        Raises ValueError when a value does not parse as `vr`, or when the shift leaves year 1
        (the engine then removes the element rather than keep a value it cannot vouch for).
        """
        if vr == "TM":
            for item in value.split("\\"):
                _check_tm_range(item.strip())
            return value
        if vr == "DA":
            shift_one = _shift_da_range
        elif vr == "DT":
            shift_one = _shift_dt
        else:
            raise ValueError(f"only DA, DT and TM values can be date-shifted, not VR {vr!r}")
        offset = self.date_offset(patient_key)
        return "\\".join(shift_one(item.strip(), offset) for item in value.split("\\"))

    def _digest(self, domain: bytes, value: str) -> bytes:
        # hmac.digest is HMAC-SHA-256 exactly as hmac.new(key, msg, hashlib.sha256).digest(), through
        # OpenSSL's one-shot path: several times faster, which matters with a dozen UIDs per file.
        # surrogatepass: a value decoded with lone surrogates still hashes, deterministically.
        return hmac.digest(self._key, domain + value.encode("utf-8", "surrogatepass"), hashlib.sha256)


# --- dates -----------------------------------------------------------------------------------------------


def _shifted(year: int, month: int, day: int, offset: timedelta, original: str) -> date:
    try:
        return date(year, month, day) + offset
    except (ValueError, OverflowError) as exc:
        # ValueError: no such day (20190229, 20201301); OverflowError: the shift runs before year 1.
        raise ValueError(f"{original!r} is not a date that can be shifted: {exc}") from None


def _shift_da_range(item: str, offset: timedelta) -> str:
    if "-" not in item:
        return _shift_da(item, offset)
    start, sep, end = item.partition("-")
    if not (start or end) or "-" in end:
        raise ValueError(f"{item!r} is not a DA range (A-B, -B or A-)")
    return (_shift_da(start, offset) if start else "") + sep + (_shift_da(end, offset) if end else "")


def _shift_da(item: str, offset: timedelta) -> str:
    if not item:
        return ""
    if match := _DA.fullmatch(item):
        shifted = _shifted(int(match[1]), int(match[2]), int(match[3]), offset, item)
        return f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"
    if match := _DA_ACR_NEMA.fullmatch(item):
        shifted = _shifted(int(match[1]), int(match[2]), int(match[3]), offset, item)
        return f"{shifted.year:04d}.{shifted.month:02d}.{shifted.day:02d}"
    raise ValueError(f"{item!r} is not a DA value (YYYYMMDD)")


def _shift_dt(item: str, offset: timedelta) -> str:
    if not item:
        return ""
    match = _DT.fullmatch(item)
    if match is None:
        raise ValueError(f"{item!r} is not a DT value (YYYYMMDDHHMMSS.FFFFFF&ZZXX)")
    year_s, month_s, day_s, time_s, suffix = match.groups()
    if time_s:
        _check_time(time_s, item)
    if suffix:
        _check_utc_offset(suffix, item)
    shifted = _shifted(int(year_s), int(month_s or 1), int(day_s or 1), offset, item)
    # A partial date stands for its first day; the shifted one is written at the same precision.
    out = f"{shifted.year:04d}"
    if month_s:
        out += f"{shifted.month:02d}"
    if day_s:
        out += f"{shifted.day:02d}"
    return out + (time_s or "") + (suffix or "")


def _check_utc_offset(suffix: str, original: str) -> None:
    hours, minutes = int(suffix[1:3]), int(suffix[3:5])
    # PS3.5 allows offsets from -1200 to +1400.
    limit = 14 if suffix[0] == "+" else 12
    if hours > limit or minutes > 59 or (hours == limit and minutes):
        raise ValueError(f"{original!r} has an impossible UTC offset {suffix!r}")


def _check_time(time_s: str, original: str) -> None:
    match = _TM.fullmatch(time_s)
    if match is None:
        raise ValueError(f"{original!r} is not a time (HHMMSS.FFFFFF)")
    _check_time_fields(match[1], match[2], match[3], original)


def _check_time_fields(hour: str, minute: str | None, second: str | None, original: str) -> None:
    # 60 seconds: PS3.5 allows a leap second.
    if int(hour) > 23 or int(minute or 0) > 59 or int(second or 0) > 60:
        raise ValueError(f"{original!r} is not a valid time of day")


def _check_tm(item: str) -> None:
    if not item:
        return
    if match := _TM_ACR_NEMA.fullmatch(item):
        _check_time_fields(match[1], match[2], match[3], item)
        return
    _check_time(item, item)


def _check_tm_range(item: str) -> None:
    start, sep, end = item.partition("-")
    if sep and (not (start or end) or "-" in end):
        raise ValueError(f"{item!r} is not a TM range (A-B, -B or A-)")
    _check_tm(start.strip())
    _check_tm(end.strip())


# --- the key file ----------------------------------------------------------------------------------------


def _read_key_file(path: Path) -> bytes:
    """The key in `path`, after checking it is private and complete. FileNotFoundError passes through."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(
            f"cannot open the pseudonym key file {path}: {exc.strerror}. "
            "Run as the user that owns it, or fix its ownership (it must be readable by that user only)."
        ) from None
    try:
        # fstat on the open descriptor: the file checked is the file read, even if the path is swapped.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(
                f"the pseudonym key file {path} is not a regular file; move it away and restore the key."
            )
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"the pseudonym key file {path} can be read or written by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}), so its key may no longer be secret. "
                f"Run `chmod 600 {path}` and check who could have read it."
            )
        key = _read_up_to(fd, KEY_BYTES + 1, path)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise KeyFileError(
            f"the pseudonym key file {path} holds {len(key)} bytes, not {KEY_BYTES}: it is damaged or not a key. "
            "Restore it from the site's backup. Only if nothing was ever exported with it, delete it and a new "
            "key is created (pseudonyms then differ from any earlier export)."
        )
    return key


def _read_up_to(fd: int, size: int, path: Path) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    try:
        while remaining and (chunk := os.read(fd, remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise KeyFileError(f"cannot read the pseudonym key file {path}: {exc.strerror}.") from None
    return b"".join(chunks)


def _create_key_file(path: Path) -> None:
    """Publish a new random key at `path` unless some key is there already.

    Two processes may start together on a fresh install, each finding no key. The key must be
    published without ever overwriting one: os.replace would let the second writer replace a key the
    first already returned and used, leaving two sets of pseudonyms. So the complete temp file is
    hard-linked to the final name, which fails with EEXIST if a key appeared meanwhile; the loser then
    reads the winner's key. A reader never sees a partial file: the name appears only once the content
    is written and fsynced.
    """
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise KeyFileError(f"cannot create the directory {directory} for the pseudonym key: {exc.strerror}.") from None
    else:
        # mkdir's mode is filtered by the umask; the key's directory is the owner's alone, whatever the umask.
        os.chmod(directory, 0o700)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise KeyFileError(f"cannot write the pseudonym key file in {directory}: {exc.strerror}.") from None
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)  # mkstemp already uses 0600; stated here because the key's secrecy depends on it
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        _publish_without_overwrite(tmp, path)
        fsync_dir(directory)
    except OSError as exc:
        raise KeyFileError(f"cannot write the pseudonym key file {path}: {exc.strerror}.") from None
    finally:
        tmp.unlink(missing_ok=True)


def _publish_without_overwrite(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        return  # another process published its key first; the caller reads that one
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # A file system without hard links (some FUSE or FAT mounts): create the final name exclusively
        # and write into it. Still never overwrites; only a reader racing the write could see it short.
        _write_exclusive(path, tmp.read_bytes())


def _write_exclusive(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(directory: Path) -> None:
    # Without this the new name may be lost in a power cut, and the next start would make another key.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
