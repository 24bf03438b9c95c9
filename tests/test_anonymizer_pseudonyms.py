"""Keyed pseudonyms: determinism, shape and validity of every output, date shifting, and the site key file."""

from __future__ import annotations

import errno
import hashlib
import hmac
import multiprocessing
import os
import random
import re
import stat
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID

from anonymizer.errors import KeyFileError
from anonymizer.pseudonyms import KEY_BYTES, Pseudonymizer, is_well_known

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
GENERATED_UID = re.compile(r"2\.25\.(0|[1-9][0-9]*)")

# Components without leading zeros, the total within UI's 64 characters.
uids = st.from_regex(r"(0|[1-9][0-9]{0,11})(\.(0|[1-9][0-9]{0,11})){1,8}", fullmatch=True).filter(
    lambda uid: len(uid) <= 64
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DCM_CODING_SCHEME = "1.2.840.10008.2.16.4"


@pytest.fixture
def pseudo() -> Pseudonymizer:
    return Pseudonymizer(KEY)


def assert_generated_uid(value: str) -> None:
    assert GENERATED_UID.fullmatch(value), value
    assert len(value) <= 44
    assert UID(value).is_valid


# --- the keyed scheme ------------------------------------------------------------------------------------


def test_outputs_are_pinned_for_a_known_key(pseudo: Pseudonymizer) -> None:
    """Pseudonyms must match those of earlier runs and other machines: any change to the scheme fails here."""
    assert pseudo.uid("1.2.3.4") == "2.25.157910775163533369044210656696165106212"
    assert pseudo.patient_id("12345") == "SG-92B8FFF705F1185E"
    assert pseudo.patient_name("12345") == "ANONYMOUS^B19580DD"
    assert pseudo.date_offset("12345") == timedelta(days=-1448)


def test_uid_is_the_documented_hmac(pseudo: Pseudonymizer) -> None:
    digest = hmac.new(KEY, b"uid\x00" + b"1.2.3.4", hashlib.sha256).digest()
    assert pseudo.uid("1.2.3.4") == "2.25." + str(int.from_bytes(digest[:16], "big"))


def test_same_key_gives_same_outputs_across_instances() -> None:
    first, second = Pseudonymizer(KEY), Pseudonymizer(bytes(KEY))
    assert first.uid("1.2.3.4.5") == second.uid("1.2.3.4.5")
    assert first.patient_id("MRN-1") == second.patient_id("MRN-1")
    assert first.patient_name("MRN-1") == second.patient_name("MRN-1")
    assert first.date_offset("MRN-1") == second.date_offset("MRN-1")
    assert first.shift_date("20200315", "DA", "MRN-1") == second.shift_date("20200315", "DA", "MRN-1")


def test_different_keys_give_unrelated_outputs() -> None:
    first, second = Pseudonymizer(KEY), Pseudonymizer(OTHER_KEY)
    inputs = [f"1.2.826.0.1.3680043.{n}" for n in range(200)]
    assert not {first.uid(uid) for uid in inputs} & {second.uid(uid) for uid in inputs}
    assert first.patient_id("MRN-1") != second.patient_id("MRN-1")
    assert first.patient_name("MRN-1") != second.patient_name("MRN-1")
    offsets = {(first.date_offset(f"P{n}"), second.date_offset(f"P{n}")) for n in range(200)}
    assert sum(a == b for a, b in offsets) < 10  # unrelated: equal only by chance, 1 in 3286 each


def test_uses_are_domain_separated(pseudo: Pseudonymizer) -> None:
    """The same text as a UID and as a Patient ID gives unrelated outputs."""
    text = "1.2.3.4"
    uid_bits = int(pseudo.uid(text).removeprefix("2.25.")).to_bytes(16, "big")
    assert uid_bits[:8].hex().upper() != pseudo.patient_id(text).removeprefix("SG-")
    assert uid_bits[:4].hex().upper() != pseudo.patient_name(text).removeprefix("ANONYMOUS^")


def test_short_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Pseudonymizer(b"\x01" * 31)


def test_repr_hides_the_key(pseudo: Pseudonymizer) -> None:
    assert KEY.hex() not in repr(pseudo)
    assert repr(KEY) not in repr(pseudo)


# --- UIDs ------------------------------------------------------------------------------------------------


@given(uids)
def test_generated_uids_are_valid_and_deterministic(uid: str) -> None:
    pseudo = Pseudonymizer(KEY)
    out = pseudo.uid(uid)
    if is_well_known(uid):
        assert out == uid
    else:
        assert_generated_uid(out)
    assert Pseudonymizer(KEY).uid(uid) == out


@given(st.text(alphabet=st.characters(exclude_characters="\\"), max_size=80))
def test_any_text_gives_a_valid_uid_or_stays_empty(text: str) -> None:
    out = Pseudonymizer(KEY).uid(text)
    if text.strip(" \t\n\r\x0b\x0c\x00") == "":
        assert out == ""
    elif not is_well_known(text):
        assert_generated_uid(out)


def test_zero_maps_to_a_valid_uid(monkeypatch: pytest.MonkeyPatch, pseudo: Pseudonymizer) -> None:
    """An HMAC whose first 128 bits are all zero is astronomically unlikely, but must still give a valid UID."""
    monkeypatch.setattr(Pseudonymizer, "_digest", lambda self, domain, value: bytes(32))
    assert pseudo.uid("1.2.3") == "2.25.0"
    assert UID("2.25.0").is_valid


def test_largest_value_fits_in_44_characters(monkeypatch: pytest.MonkeyPatch, pseudo: Pseudonymizer) -> None:
    monkeypatch.setattr(Pseudonymizer, "_digest", lambda self, domain, value: b"\xff" * 32)
    out = pseudo.uid("1.2.3")
    assert out == f"2.25.{2**128 - 1}"
    assert len(out) == 44
    assert_generated_uid(out)


@pytest.mark.parametrize("uid", [CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN, DCM_CODING_SCHEME])
def test_well_known_uids_are_kept(pseudo: Pseudonymizer, uid: str) -> None:
    assert is_well_known(uid)
    assert pseudo.uid(uid) == uid
    assert pseudo.uid(uid + "\x00") == uid  # as padded in the file


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.840.10008.5.1.4.1.1.2.12345",  # an instance minted under a SOP class: not well known
        "1.2.840.10008",  # the DICOM root itself is a prefix, not a defined UID
        "1.2.826.0.1.3680043.8.498.1",
    ],
)
def test_only_dictionary_uids_are_well_known(pseudo: Pseudonymizer, uid: str) -> None:
    assert not is_well_known(uid)
    assert_generated_uid(pseudo.uid(uid))


def test_distinct_uids_give_distinct_outputs(pseudo: Pseudonymizer) -> None:
    rng = random.Random(20240611)
    inputs: set[str] = set()
    while len(inputs) < 10_000:
        parts = [str(rng.randrange(1, 10 ** rng.randrange(1, 10))) for _ in range(rng.randrange(3, 9))]
        inputs.add("1." + ".".join(parts))
    outputs = {pseudo.uid(uid) for uid in inputs}
    assert len(outputs) == len(inputs)
    assert not outputs & inputs


def test_empty_uid_stays_empty(pseudo: Pseudonymizer) -> None:
    assert pseudo.uid("") == ""
    assert pseudo.uid("\x00") == ""


def test_padding_does_not_change_the_pseudonym(pseudo: Pseudonymizer) -> None:
    assert pseudo.uid("1.2.3.4\x00") == pseudo.uid("1.2.3.4") == pseudo.uid(" 1.2.3.4 ")


def test_multi_valued_uids_are_mapped_value_by_value(pseudo: Pseudonymizer) -> None:
    out = pseudo.uid(f"1.2.3.4\\{CT_IMAGE_STORAGE}\\1.2.3.5")
    assert out.split("\\") == [pseudo.uid("1.2.3.4"), CT_IMAGE_STORAGE, pseudo.uid("1.2.3.5")]


# --- patient ID and name ---------------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=64).filter(lambda text: text.strip() != ""))
def test_patient_id_format(original: str) -> None:
    out = Pseudonymizer(KEY).patient_id(original)
    assert re.fullmatch(r"SG-[0-9A-F]{16}", out)
    assert len(out) <= 64  # LO


def test_patient_id_is_stable_and_distinct(pseudo: Pseudonymizer) -> None:
    assert pseudo.patient_id("12345") == pseudo.patient_id("12345 ")  # LO padding is not part of the value
    assert len({pseudo.patient_id(str(n)) for n in range(10_000)}) == 10_000


def test_empty_patient_id_stays_empty(pseudo: Pseudonymizer) -> None:
    assert pseudo.patient_id("") == ""
    assert pseudo.patient_id("  ") == ""


@given(st.text(max_size=64))
def test_patient_name_format(patient_key: str) -> None:
    out = Pseudonymizer(KEY).patient_name(patient_key)
    assert re.fullmatch(r"ANONYMOUS\^[0-9A-F]{8}", out)
    assert len(out) == 18  # well within PN's 64 characters per component group


def test_patient_name_follows_the_patient_key(pseudo: Pseudonymizer) -> None:
    assert pseudo.patient_name("12345") == pseudo.patient_name("12345")
    assert pseudo.patient_name("12345") != pseudo.patient_name("12346")


# --- date offset and shifting ----------------------------------------------------------------------------


@given(st.text(max_size=64))
def test_date_offset_in_range_and_stable(patient_key: str) -> None:
    offset = Pseudonymizer(KEY).date_offset(patient_key)
    assert timedelta(days=-3650) <= offset <= timedelta(days=-365)
    assert offset == timedelta(days=offset.days)  # whole days
    assert Pseudonymizer(KEY).date_offset(patient_key) == offset


def test_date_offsets_spread_over_the_range(pseudo: Pseudonymizer) -> None:
    days = [-pseudo.date_offset(f"P{n}").days for n in range(2000)]
    assert min(days) < 365 + 100
    assert max(days) > 3650 - 100
    assert len(set(days)) > 1000


def da(value: date) -> str:
    return value.strftime("%Y%m%d")


def shifted(pseudo: Pseudonymizer, year: int, month: int, day: int, patient: str = "P1") -> date:
    return date(year, month, day) + pseudo.date_offset(patient)


def test_shift_da(pseudo: Pseudonymizer) -> None:
    out = pseudo.shift_date("20200315", "DA", "P1")
    assert out == da(shifted(pseudo, 2020, 3, 15))
    assert out != "20200315"


def test_shift_da_keeps_intervals_of_one_patient(pseudo: Pseudonymizer) -> None:
    first = date.fromisoformat(_iso(pseudo.shift_date("20200228", "DA", "P1")))
    second = date.fromisoformat(_iso(pseudo.shift_date("20210301", "DA", "P1")))
    assert second - first == date(2021, 3, 1) - date(2020, 2, 28)


def _iso(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}"


def test_shift_feb_29(pseudo: Pseudonymizer) -> None:
    assert pseudo.shift_date("20200229", "DA", "P1") == da(shifted(pseudo, 2020, 2, 29))
    # A shift landing on a leap day in a leap year is fine too: find a date that does.
    patient = next(f"P{n}" for n in range(10_000) if -pseudo.date_offset(f"P{n}").days == 365)
    assert pseudo.shift_date("20250301", "DA", patient) == "20240301"
    assert pseudo.shift_date("20250228", "DA", patient) == "20240229"
    with pytest.raises(ValueError, match="20190229"):
        pseudo.shift_date("20190229", "DA", "P1")


def test_shift_da_padding_and_empty(pseudo: Pseudonymizer) -> None:
    assert pseudo.shift_date("20200315 ", "DA", "P1") == da(shifted(pseudo, 2020, 3, 15))
    assert pseudo.shift_date("", "DA", "P1") == ""


def test_shift_da_acr_nema_format(pseudo: Pseudonymizer) -> None:
    assert pseudo.shift_date("2020.03.15", "DA", "P1") == shifted(pseudo, 2020, 3, 15).strftime("%Y.%m.%d")


@pytest.mark.parametrize(
    ("value", "ends"),
    [
        ("20200101-20200201", ((2020, 1, 1), (2020, 2, 1))),
        ("-20200201", (None, (2020, 2, 1))),
        ("20200101-", ((2020, 1, 1), None)),
    ],
)
def test_shift_da_range(
    pseudo: Pseudonymizer, value: str, ends: tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]
) -> None:
    start, end = ends
    expected = (da(shifted(pseudo, *start)) if start else "") + "-" + (da(shifted(pseudo, *end)) if end else "")
    assert pseudo.shift_date(value, "DA", "P1") == expected


def test_shift_multi_valued(pseudo: Pseudonymizer) -> None:
    out = pseudo.shift_date("20200101\\20210615\\", "DA", "P1")
    assert out == "\\".join([da(shifted(pseudo, 2020, 1, 1)), da(shifted(pseudo, 2021, 6, 15)), ""])
    dt_out = pseudo.shift_date("20200101120000\\2021+0100", "DT", "P1")
    assert dt_out == "\\".join([da(shifted(pseudo, 2020, 1, 1)) + "120000", f"{shifted(pseudo, 2021, 1, 1).year}+0100"])


@pytest.mark.parametrize("suffix", ["", "+0100", "-0500", "+1400", "-1200", "+0000"])
@pytest.mark.parametrize(
    ("value", "precision"),
    [
        ("2020", "year"),
        ("202003", "month"),
        ("20200315", "day"),
        ("2020031514", "day"),
        ("202003151430", "day"),
        ("20200315143059", "day"),
        ("20200315143059.1", "day"),
        ("20200315143059.123456", "day"),
        ("20200315235960", "day"),  # a leap second
    ],
)
def test_shift_dt_keeps_precision_and_suffix(pseudo: Pseudonymizer, value: str, precision: str, suffix: str) -> None:
    out = pseudo.shift_date(value + suffix, "DT", "P1")
    year, month, day = int(value[:4]), int(value[4:6] or 1), int(value[6:8] or 1)
    moved = shifted(pseudo, year, month, day)
    date_part = {"year": f"{moved:%Y}", "month": f"{moved:%Y%m}", "day": f"{moved:%Y%m%d}"}[precision]
    assert out == date_part + value[len(date_part) :] + suffix
    assert len(out) == len(value + suffix)


def test_shift_tm_is_unchanged(pseudo: Pseudonymizer) -> None:
    for value in ["", "12", "1230", "123059", "123059.5", "123059.123456 ", "12:30:59.25", "1200-1300", "1200\\1300"]:
        assert pseudo.shift_date(value, "TM", "P1") == value


@pytest.mark.parametrize(
    ("value", "vr"),
    [
        ("2020013", "DA"),
        ("202001011", "DA"),
        ("20201301", "DA"),
        ("20200230", "DA"),
        ("20200100", "DA"),
        ("00000101", "DA"),  # no year 0
        ("00010101", "DA"),  # shifting runs before year 1
        ("2020-01-01", "DA"),
        ("20200101-20200201-20200301", "DA"),
        ("-", "DA"),
        ("2020/01/01", "DA"),
        ("Doe^John", "DA"),
        ("\u0662\u0660\u0662\u0660\u0660\u0661\u0660\u0661", "DA"),  # Arabic-Indic digits
        ("20200101 1200", "DA"),
        ("20200101\\garbage", "DA"),
        ("202", "DT"),
        ("2020011", "DT"),
        ("20200101250000", "DT"),
        ("20200101126000", "DT"),
        ("20200101120061", "DT"),
        ("2020010112.5", "DT"),  # a fraction needs seconds
        ("20200101120000.", "DT"),
        ("20200101120000.1234567", "DT"),
        ("202001011200000", "DT"),
        ("20200101+1500", "DT"),
        ("20200101-1300", "DT"),
        ("20200101+0160", "DT"),
        ("20200101+01", "DT"),
        ("20200101-20200201", "DT"),
        ("20200101T120000", "DT"),
        ("2500", "TM"),
        ("1261", "TM"),
        ("12:61", "TM"),
        ("1", "TM"),
        ("12.5", "TM"),
        ("noon", "TM"),
        ("1200-1300-1400", "TM"),
        ("20200101", "LO"),
    ],
)
def test_invalid_values_raise(pseudo: Pseudonymizer, value: str, vr: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the engine relies on exactly this type, whatever the message
        pseudo.shift_date(value, vr, "P1")


# --- the key file ----------------------------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Any:
    """A permissive umask, so that the test sees the modes the code sets rather than ones the umask forced."""
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.usefixtures("loose_umask")
def test_key_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "site" / "keys" / "pseudonym.key"
    pseudo = Pseudonymizer.from_key_file(path)
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    key = path.read_bytes()
    assert len(key) == KEY_BYTES
    assert pseudo.uid("1.2.3.4") == Pseudonymizer(key).uid("1.2.3.4")
    assert sorted(p.name for p in path.parent.iterdir()) == ["pseudonym.key"]  # no temp file left


def test_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    Pseudonymizer.from_key_file(directory / "key")
    assert mode_of(directory) == 0o755


def test_key_file_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    first = Pseudonymizer.from_key_file(path)
    content = path.read_bytes()
    second = Pseudonymizer.from_key_file(path)
    third = Pseudonymizer.from_key_file(path, create=False)
    assert path.read_bytes() == content
    assert first.uid("1.2.3.4") == second.uid("1.2.3.4") == third.uid("1.2.3.4")


def test_two_new_key_files_differ(tmp_path: Path) -> None:
    first = Pseudonymizer.from_key_file(tmp_path / "a")
    second = Pseudonymizer.from_key_file(tmp_path / "b")
    assert first.uid("1.2.3.4") != second.uid("1.2.3.4")


def test_missing_key_file_without_create(tmp_path: Path) -> None:
    path = tmp_path / "key"
    with pytest.raises(KeyFileError, match=re.escape(str(path))):
        Pseudonymizer.from_key_file(path, create=False)
    assert not path.exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666])
def test_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key"
    path.write_bytes(KEY)
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match=re.escape(str(path))) as caught:
        Pseudonymizer.from_key_file(path)
    assert f"chmod 600 {path}" in str(caught.value)
    assert path.read_bytes() == KEY  # never replaced


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_key_file_private_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key"
    path.write_bytes(KEY)
    os.chmod(path, mode)
    assert Pseudonymizer.from_key_file(path).uid("1.2.3.4") == Pseudonymizer(KEY).uid("1.2.3.4")


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_file_of_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"\x01" * size)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=re.escape(str(path))) as caught:
        Pseudonymizer.from_key_file(path)
    assert f"holds {min(size, KEY_BYTES + 1)} bytes" in str(caught.value)
    assert path.read_bytes() == b"\x01" * size  # a damaged key is reported, never silently replaced


def test_key_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match=re.escape(str(path))):
        Pseudonymizer.from_key_file(path)


def test_unreadable_key_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: the tests may run as root, who can read a file of any mode.
    path = tmp_path / "key"
    path.write_bytes(KEY)
    os.chmod(path, 0o600)
    real_open = os.open

    def denying_open(target: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(target) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(target, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denying_open)
    with pytest.raises(KeyFileError, match=re.escape(str(path))) as caught:
        Pseudonymizer.from_key_file(path)
    assert "Permission denied" in str(caught.value)


def test_dangling_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.symlink_to(tmp_path / "missing")
    with pytest.raises(KeyFileError, match="symbolic link"):
        Pseudonymizer.from_key_file(path)
    assert not (tmp_path / "missing").exists()


def test_key_published_meanwhile_is_the_one_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process publishes its key between our check and our link: we must use its key, not ours."""
    path = tmp_path / "key"
    real_link = os.link

    def racing_link(src: Any, dst: Any) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, OTHER_KEY)
        os.close(fd)
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    pseudo = Pseudonymizer.from_key_file(path)
    assert path.read_bytes() == OTHER_KEY
    assert pseudo.uid("1.2.3.4") == Pseudonymizer(OTHER_KEY).uid("1.2.3.4")
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


@pytest.mark.usefixtures("loose_umask")
def test_file_system_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: Any, dst: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    path = tmp_path / "key"
    pseudo = Pseudonymizer.from_key_file(path)
    assert mode_of(path) == 0o600
    assert pseudo.uid("1.2.3.4") == Pseudonymizer(path.read_bytes()).uid("1.2.3.4")
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def _race_worker(path_base: str, rounds: int, barrier: Any, results: Any) -> None:
    """Runs in a separate process: in each round, wait for all the others, then load or create the key.

    It also reports how often its link lost to another process's, to show the race really happened."""
    real_link = os.link
    lost = 0

    def counting_link(src: Any, dst: Any) -> None:
        nonlocal lost
        try:
            real_link(src, dst)
        except FileExistsError:
            lost += 1
            raise

    os.link = counting_link  # type: ignore[assignment]  # this process is ours alone and ends after the loop
    for round_no in range(rounds):
        barrier.wait()
        uid = Pseudonymizer.from_key_file(Path(f"{path_base}-{round_no}")).uid("1.2.3.4")
        results.put((round_no, uid, lost))
        lost = 0


def test_processes_racing_to_create_the_key_end_with_one(tmp_path: Path) -> None:
    workers, rounds = 4, 10
    ctx = multiprocessing.get_context("spawn")  # forking a process that runs pytest is fragile
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    base = str(tmp_path / "keys" / "pseudonym")
    processes = [ctx.Process(target=_race_worker, args=(base, rounds, barrier, results)) for _ in range(workers)]
    for process in processes:
        process.start()
    seen: dict[int, set[str]] = {}
    lost_links = 0
    for _ in range(workers * rounds):
        round_no, uid, lost = results.get(timeout=60)
        seen.setdefault(round_no, set()).add(uid)
        lost_links += lost
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    results.close()
    results.join_thread()
    for round_no in range(rounds):
        key = Path(f"{base}-{round_no}").read_bytes()
        assert seen[round_no] == {Pseudonymizer(key).uid("1.2.3.4")}
    assert len({uid for uids in seen.values() for uid in uids}) == rounds
    # Without a lost race this test would prove nothing; with the barrier nearly every round has one.
    assert lost_links > 0
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == sorted(f"pseudonym-{n}" for n in range(rounds))
