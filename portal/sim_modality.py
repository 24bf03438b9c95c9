"""`servicegate-sim-modality`: a SIMULATED imaging modality (a CT scanner), for the tests and `make demo`.

It is vendor and test tooling, never installed on a device: a real scanner ships its own service tools. The
simulator keeps its whole "scanner" in one folder (the state directory) and implements the **modality service
tool contract**, the command-line contract that the agent's task catalog and examination-block hooks rely on.
A real modality's service tool implements the same contract; the agent runs it as an argv list, never through
a shell.

    servicegate-sim-modality --state DIR [--now EPOCH_SECONDS] COMMAND ...

`--now` sets the clock (seconds since the epoch, UTC), so that tests move time without sleeping; the default is
the real clock. All times in the state are epoch seconds.

Exit codes: 0 done; 2 a bad argument or an unknown name (one line on stderr saying what is wrong and what is
allowed); 3 refused (an examination while examinations are blocked); 1 any other failure (no simulated
modality at DIR, a file that cannot be read or written).

The commands:

    init [--studies N] [--images N] [--force]   create a modality at DIR (default 2 studies of 3 images);
                                                 refused (2) over an existing one unless --force
    status                                       the state as one JSON object (below)
    restart-service NAME                         restart acquisition | reconstruction | viewer
    diagnostics [--suite quick|full] [--seconds S]
                                                 run a diagnostics suite, its report on stdout line by line,
                                                 taking S seconds (a long task: the kill switch may stop it)
    set-config KEY VALUE                         change a setting of config/modality.conf
    set-protocol NAME FIELD VALUE                change a field of a scan protocol (numeric fields: numbers)
    restore config|protocol|diagnostics|service  undo what a task stopped early may have left behind
    export-study STUDY_UID OUTDIR                copy a study's DICOM files into OUTDIR
    block --lease-s N [--by WHO]                 block examinations for N seconds (1-3600): a lease the agent
                                                 renews while a full-access session runs, so that an agent that
                                                 dies never leaves the scanner blocked
    unblock                                      end the block (idempotent)
    block-status                                 print `blocked` or `unblocked`
    exam-start                                   the technologist starts an examination: refused (3) while
                                                 blocked; every attempt is recorded

`restore` is what the agent runs after it stops a task early. The first change to a setting or a protocol
keeps a backup (`modality.conf.bak`, `protocols/NAME.json.bak`); `restore config|protocol` puts the backups
back and removes them; `restore diagnostics` marks unfinished diagnostics runs aborted; `restore service`
marks every service running. Each restore is recorded, with "nothing to restore" when there was nothing.

The state directory:

    state.json                    services, block, examinations, restores, diagnostics, config_changes,
                                  protocol_changes, exports (what `status` prints, less the fields below)
    config/modality.conf          `key = value` lines
    protocols/NAME.json           head-routine, chest-low-dose, abdomen-contrast
    logs/acquisition.log          realistic log lines, some with patient data (for the log scrubber)
    logs/reconstruction.log
    dicom/STUDY_UID/N.dcm         CT studies with small real images and planted patient data (deterministic)

`status` adds: "blocked" (the block's lease has not lapsed at --now), "config" (modality.conf as a dict),
"protocols" (name -> fields) and "studies" (study_uid, number of files, patient_name).

Several commands may run at once (the agent renews the block while a task runs): every change to state.json
is made under an exclusive lock on DIR/.lock and written atomically. A running diagnostics suite does not hold
the lock between its start and its finish.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# pydicom is loaded only by the code that reads or writes DICOM files: the other commands, above all the block
# lease that the agent renews every few seconds, start in a fraction of the time.
if TYPE_CHECKING:
    from pydicom.dataset import FileDataset

PROG = "servicegate-sim-modality"
SERVICES = ("acquisition", "reconstruction", "viewer")
CONFIG_DEFAULTS = {"table_speed": "normal", "dose_report": "on", "language": "en", "auto_archive": "on",
                   "screen_lock_min": "10"}
NUMERIC_FIELDS = ("kv", "ma", "slice_mm", "rotation_s")
TEXT_FIELDS = ("description", "kernel")
PROTOCOLS: dict[str, dict[str, Any]] = {
    "head-routine": {"description": "CT HEAD W/O CONTRAST", "kv": 120, "ma": 300, "slice_mm": 5.0,
                     "rotation_s": 1.0, "kernel": "H30s"},
    "chest-low-dose": {"description": "CT CHEST LOW DOSE", "kv": 100, "ma": 40, "slice_mm": 1.0,
                       "rotation_s": 0.5, "kernel": "B50f"},
    "abdomen-contrast": {"description": "CT ABDOMEN W CONTRAST", "kv": 120, "ma": 220, "slice_mm": 3.0,
                         "rotation_s": 0.5, "kernel": "B30f"},
}
_CHECKS = ("ok: gantry rotation 0.50 s/rev, deviation 0.1 %", "ok: detector temperature 31.2 C",
           "ok: x-ray tube anode heat 12 %, filament current 4.1 A", "ok: table position encoder, 0.2 mm",
           "ok: reconstruction unit", "ok: collimator calibration", "ok: cooling circuit flow 6.1 l/min",
           "ok: water phantom noise 4.8 HU, uniformity 1.2 HU")
DIAGNOSTIC_SUITES = {"quick": _CHECKS[:5], "full": _CHECKS}
RESTORABLE = ("config", "protocol", "diagnostics", "service")
MAX_LEASE_S, MAX_DIAGNOSTICS_S, MAX_STUDIES, MAX_IMAGES = 3600, 3600, 100, 100
SEED = 20241127  # every modality made by `init` is the same: tests know what was planted
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root: the UIDs look real and belong to no device
INSTITUTION = "Riverside General Hospital"  # one site's scanner: the same in every study
IMAGE_SIZE = 16


class SimError(Exception):
    """A command failed (exit 1); the message says what happened and what to do."""

    exit_code = 1


class UsageError(SimError):
    """A bad argument or an unknown name (exit 2)."""

    exit_code = 2


class Refused(SimError):
    """The modality refuses the request in its current state (exit 3)."""

    exit_code = 3


# ---- the state directory ---------------------------------------------------------------------------------------

def _state_file(state_dir: Path) -> Path:
    state_file = state_dir / "state.json"
    if not state_file.is_file():
        raise SimError(f"no simulated modality at {state_dir}; create one with `{PROG} --state {state_dir} init`")
    return state_file


@contextlib.contextmanager
def _locked(state_dir: Path, *, shared: bool = False) -> Iterator[None]:
    with open(state_dir / ".lock", "a") as lock:  # released when closed
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield


def _write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def _load(state_dir: Path) -> dict[str, Any]:
    state_file = _state_file(state_dir)
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except ValueError as exc:
        raise SimError(f"{state_file} is damaged ({exc}); re-create the modality with `init --force`") from exc
    return state


@contextlib.contextmanager
def _changing(state_dir: Path) -> Iterator[dict[str, Any]]:
    """The state to change, under the lock; saved when the block ends without an error, untouched otherwise."""
    _state_file(state_dir)  # before the lock file is made: a missing modality is reported as such
    with _locked(state_dir):
        state = _load(state_dir)
        yield state
        _write_atomic(state_dir / "state.json", _json_text(state))


def _known(kind: str, name: str, allowed: Iterable[str]) -> None:
    choices = sorted(allowed)
    if name not in choices:
        raise UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(choices) or '(none)'}")


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


# ---- init: a scanner with settings, protocols, logs and studies --------------------------------------------------

@dataclass(frozen=True)
class _Patient:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    accession: str
    referring: str
    study_date: str
    study_time: str
    protocol: str


FAMILY_NAMES = ("DOE", "MUSTERMANN", "OKONKWO", "VANDERSLOOT", "KOWALCZUK", "PAPADIMITRIOU", "NAKAGAWARA",
                "FITZWARREN", "THISTLEWAITE", "ABERCROMBY", "LIGHTBODY", "QUENNELL")
GIVEN_NAMES = ("JANE", "ERIKA", "ADAEZE", "PIETER", "AGNIESZKA", "ELENI", "HARUTO", "GWENDOLYN", "AMBROSE",
               "ISOBEL", "TOBIAS", "MARGUERITE")
PHYSICIANS = ("SMITH^ALAN^^DR", "BERGMANN^HELGA^^DR", "OYELARAN^TUNDE^^DR", "LINDQVIST^ASTRID^^DR")


def _patients(count: int) -> list[_Patient]:
    rng = random.Random(SEED)
    names = rng.sample([f"{f}^{g}" for f in FAMILY_NAMES for g in GIVEN_NAMES], count)
    return [_Patient(name=name, patient_id=f"{rng.randrange(10**7, 10**8)}",
                     birth_date=_date(rng, 1938, 2004), sex=rng.choice("FM"),
                     accession=f"ACC{rng.randrange(10**6, 10**7)}", referring=rng.choice(PHYSICIANS),
                     study_date=_date(rng, 2024, 2024), study_time=f"{rng.randrange(7, 18):02}{rng.randrange(60):02}00",
                     protocol=rng.choice(sorted(PROTOCOLS)))
            for name in names]


def _date(rng: random.Random, first_year: int, last_year: int) -> str:
    start, end = dt.date(first_year, 1, 1), dt.date(last_year, 12, 31)
    return (start + dt.timedelta(days=rng.randrange((end - start).days))).strftime("%Y%m%d")


ACQUISITION_LOG = (
    "INFO  [system] power-on self test passed; software VA40 build 2211",
    "INFO  [tube] warm-up started, anode 8 %",
    "INFO  [tube] warm-up complete, anode 38 %",
    "INFO  [worklist] Patient {a.name} (ID {a.patient_id}) registered, accession {a.accession}",
    "INFO  [worklist] {a.name}: born {a.birth_date}, sex {a.sex}, referred by {a.referring}",
    "INFO  [acq] protocol {a.protocol} loaded for {a.name}",
    "INFO  [acq] scan started, topogram 512 mm",
    "INFO  [acq] scan complete: CTDIvol 12.4 mGy, DLP 410 mGy*cm",
    "WARN  [gantry] rotation speed deviation 0.4 % (limit 1.0 %)",
    "INFO  [worklist] Patient {b.name} (ID {b.patient_id}) registered, accession {b.accession}",
    "INFO  [acq] protocol {b.protocol} loaded; {b.name} positioned head first supine",
    "ERROR [acq] scan aborted by operator for {b.name}: patient movement",
    "INFO  [acq] scan repeated and complete: CTDIvol 8.1 mGy, DLP 295 mGy*cm",
)
RECONSTRUCTION_LOG = (
    "INFO  [recon] reconstruction unit ready, 2 GPUs, 24 GiB",
    "INFO  [recon] job 4711 queued: {a.accession} ({a.name})",
    "INFO  [recon] job 4711: protocol {a.protocol}, 42 images",
    "INFO  [recon] job 4711 done in 11.2 s",
    "INFO  [store] sent 42 images of {a.name} (ID {a.patient_id}) to PACS at " + INSTITUTION,
    "WARN  [recon] GPU 1 temperature 78 C (limit 85 C)",
    "INFO  [recon] job 4712 queued: {b.accession} ({b.name}, born {b.birth_date})",
    "INFO  [recon] job 4712: protocol {b.protocol}, 310 images",
    "ERROR [recon] job 4712: out of memory on GPU 1, retried on GPU 0",
    "INFO  [recon] job 4712 done in 48.9 s",
    "INFO  [store] sent 310 images of {b.name} (ID {b.patient_id}) to PACS",
    "INFO  [recon] nightly cleanup: 12 raw data sets removed",
)


def _log_text(lines: tuple[str, ...], patients: list[_Patient], start: dt.datetime) -> str:
    stamps = (start + dt.timedelta(seconds=97 * i, milliseconds=131 * i) for i in range(len(lines)))
    return "".join(f"{t:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " " + line.format(a=patients[0], b=patients[1]) + "\n"
                   for t, line in zip(stamps, lines, strict=True))


def _uid(rng: random.Random) -> str:
    return f"{UID_ROOT}{rng.randrange(10**29, 10**30)}"


def _ct_image(patient: _Patient, uids: tuple[str, str, str, str], number: int) -> FileDataset:
    """One 16x16 CT slice carrying the patient's identity where real scanners put it."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian

    study, series, frame, sop = uids
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, UID(sop)
    meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet, ds.ImageType = "ISO_IR 100", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, sop, "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
        patient.name, patient.patient_id, patient.birth_date, patient.sex)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = patient.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = patient.study_time
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.InstitutionName = (
        patient.accession, patient.referring, INSTITUTION)
    ds.StudyID, ds.StudyDescription = patient.accession[-4:], PROTOCOLS[patient.protocol]["description"]
    ds.Manufacturer, ds.ManufacturerModelName, ds.StationName = "ServiceGate Simulated", "SimCT 1", "SIMCT01"
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, number, 1
    ds.KVP, ds.SliceThickness = PROTOCOLS[patient.protocol]["kv"], PROTOCOLS[patient.protocol]["slice_mm"]
    ds.PatientPosition, ds.PositionReferenceIndicator, ds.PixelSpacing = "HFS", "", [0.7, 0.7]
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [-5.6, -5.6, 5.0 * number], [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = IMAGE_SIZE
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = -1024, 1, 40, 400
    ds.PixelData = _phantom(number)
    return ds


def _phantom(number: int) -> bytes:
    """A water disc in air, a little different on every slice; values below 4096 (12 bits stored)."""
    centre, radius = (IMAGE_SIZE - 1) / 2, IMAGE_SIZE / 2 - 1 - number % 3
    pixels = [1024 + 10 * ((r + c + number) % 5) if math.hypot(r - centre, c - centre) <= radius else 24
              for r in range(IMAGE_SIZE) for c in range(IMAGE_SIZE)]
    return struct.pack(f"<{len(pixels)}H", *pixels)


def _write_study(dicom_dir: Path, patient: _Patient, images: int, rng: random.Random) -> None:
    from pydicom import dcmwrite

    study, series, frame = _uid(rng), _uid(rng), _uid(rng)
    (dicom_dir / study).mkdir(parents=True)
    for number in range(1, images + 1):
        dcmwrite(dicom_dir / study / f"{number}.dcm", _ct_image(patient, (study, series, frame, _uid(rng)), number),
                 enforce_file_format=True)


def _config_text(config: dict[str, str]) -> str:
    return "# Simulated modality settings (servicegate-sim-modality)\n" + \
        "".join(f"{key} = {value}\n" for key, value in config.items())


def _fresh_state() -> dict[str, Any]:
    return {"services": {name: {"running": True, "restarts": 0, "last_restart": None} for name in SERVICES},
            "block": {"until": None, "by": None}, "examinations": [], "restores": [], "diagnostics": [],
            "config_changes": [], "protocol_changes": [], "exports": []}


def init(state_dir: Path, studies: int = 2, images: int = 3, *, force: bool = False) -> None:
    """Create a simulated modality at `state_dir`: always the same studies, logs and settings."""
    if not 0 <= studies <= MAX_STUDIES or not 1 <= images <= MAX_IMAGES:
        raise UsageError(f"--studies must be 0-{MAX_STUDIES} and --images 1-{MAX_IMAGES} "
                         f"(got {studies} and {images})")
    if (state_dir / "state.json").exists() and not force:
        raise UsageError(f"a simulated modality already exists at {state_dir}; add --force to replace it")
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir):
        for folder in ("config", "protocols", "logs", "dicom"):  # only the simulator's own: DIR may hold more
            shutil.rmtree(state_dir / folder, ignore_errors=True)
            (state_dir / folder).mkdir()
        (state_dir / "config" / "modality.conf").write_text(_config_text(CONFIG_DEFAULTS))
        for name, fields in PROTOCOLS.items():
            (state_dir / "protocols" / f"{name}.json").write_text(_json_text({"name": name, **fields}))
        patients = _patients(max(studies, 2))
        start = dt.datetime(2024, 11, 27, 7, 58, 12, 104000)
        (state_dir / "logs" / "acquisition.log").write_text(_log_text(ACQUISITION_LOG, patients, start))
        (state_dir / "logs" / "reconstruction.log").write_text(
            _log_text(RECONSTRUCTION_LOG, patients, start + dt.timedelta(minutes=3)))
        rng = random.Random(SEED + 1)
        for patient in patients[:studies]:
            _write_study(state_dir / "dicom", patient, images, rng)
        _write_atomic(state_dir / "state.json", _json_text(_fresh_state()))


# ---- reading ---------------------------------------------------------------------------------------------------

def _parse_config(text: str) -> dict[str, str]:
    lines = (line.strip() for line in text.splitlines())
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _blocked(state: dict[str, Any], now: float) -> bool:
    until = state["block"]["until"]
    return until is not None and now < until


def _studies(dicom_dir: Path) -> list[dict[str, Any]]:
    from pydicom import dcmread

    studies = []
    for study in sorted(p for p in dicom_dir.iterdir() if p.is_dir()):
        files = sorted(study.glob("*.dcm"))
        name = str(dcmread(files[0], stop_before_pixels=True).PatientName) if files else None
        studies.append({"study_uid": study.name, "files": len(files), "patient_name": name})
    return studies


def read_state(state_dir: Path, now: float | None = None) -> dict[str, Any]:
    """What `status` prints: the state, whether examinations are blocked at `now`, the settings, the
    protocols and the studies."""
    now = time.time() if now is None else now
    _state_file(state_dir)
    with _locked(state_dir, shared=True):
        state = _load(state_dir)
        state["blocked"] = _blocked(state, now)
        state["config"] = _parse_config((state_dir / "config" / "modality.conf").read_text())
        protocols = sorted((state_dir / "protocols").glob("*.json"))
        state["protocols"] = {p.stem: json.loads(p.read_text()) for p in protocols}
        state["studies"] = _studies(state_dir / "dicom")
    return state


def is_blocked(state_dir: Path, now: float) -> bool:
    """Whether examinations are blocked at `now` (state.json is replaced whole: no lock needed to read it)."""
    return _blocked(_load(state_dir), now)


# ---- service tasks ---------------------------------------------------------------------------------------------

def restart_service(state_dir: Path, name: str, now: float) -> int:
    """Restart a service; returns how often it has been restarted."""
    _known("service", name, SERVICES)
    with _changing(state_dir) as state:
        service = state["services"][name]
        service.update(running=True, restarts=service["restarts"] + 1, last_restart=now)
    return int(service["restarts"])


def run_diagnostics(state_dir: Path, suite: str, seconds: float, now: float, report: Callable[[str], None]) -> None:
    """Run a suite, reporting line by line over `seconds`. The lock is held only to record the start and the
    finish: a long run must not keep the block lease from being renewed."""
    _known("diagnostics suite", suite, DIAGNOSTIC_SUITES)
    if not 0 <= seconds <= MAX_DIAGNOSTICS_S:
        raise UsageError(f"--seconds must be 0-{MAX_DIAGNOSTICS_S} (got {seconds})")
    with _changing(state_dir) as state:
        run = len(state["diagnostics"])
        state["diagnostics"].append({"started": now, "finished": False, "suite": suite})
    lines = DIAGNOSTIC_SUITES[suite]
    for line in lines:
        time.sleep(seconds / len(lines))
        report(line)
    with _changing(state_dir) as state:
        state["diagnostics"][run]["finished"] = True
    report(f"diagnostics {suite}: {len(lines)} checks passed")


def set_config(state_dir: Path, key: str, value: str, now: float) -> None:
    _known("setting", key, CONFIG_DEFAULTS)
    new = value.strip()
    if not new or "\n" in new:
        raise UsageError(f"the value of {key} must be one non-empty line (got {value!r})")
    conf = state_dir / "config" / "modality.conf"
    with _changing(state_dir) as state:
        text = conf.read_text()
        _keep_backup(conf, text)
        old = _parse_config(text).get(key)
        lines = [f"{key} = {new}" if key in _parse_config(line) else line for line in text.splitlines()]
        if old is None:
            lines.append(f"{key} = {new}")
        _write_atomic(conf, "\n".join(lines) + "\n")
        state["config_changes"].append({"key": key, "old": old, "new": new, "at": now})


def set_protocol(state_dir: Path, name: str, field: str, value: str, now: float) -> None:
    _state_file(state_dir)
    _known("protocol", name, (p.stem for p in (state_dir / "protocols").glob("*.json")))
    path = state_dir / "protocols" / f"{name}.json"
    _known("protocol field", field, NUMERIC_FIELDS + TEXT_FIELDS)
    new: str | float = _number(field, value) if field in NUMERIC_FIELDS else value
    with _changing(state_dir) as state:
        text = path.read_text()
        _keep_backup(path, text)
        protocol = json.loads(text)
        old = protocol.get(field)
        protocol[field] = new
        _write_atomic(path, _json_text(protocol))
        state["protocol_changes"].append({"protocol": name, "field": field, "old": old, "new": new, "at": now})


def _keep_backup(path: Path, text: str) -> None:
    """Before the first change, the original goes to PATH.bak, which `restore` puts back."""
    backup = path.with_name(path.name + ".bak")
    if not backup.exists():
        _write_atomic(backup, text)


def _number(field: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{field} takes a positive number (got {value!r}); e.g. 120 or 0.5")
    return int(number) if number.is_integer() and "." not in value else number


def restore(state_dir: Path, what: str, now: float) -> str:
    """Undo what a task stopped early may have left; returns what was restored."""
    _known("restore target", what, RESTORABLE)
    with _changing(state_dir) as state:
        detail = _RESTORERS[what](state_dir, state)
        state["restores"].append({"what": what, "at": now, "detail": detail or "nothing to restore"})
    return detail or "nothing to restore"


def _restore_backups(backups: list[Path]) -> str:
    for backup in backups:
        os.replace(backup, backup.with_suffix(""))
    return ", ".join(f"restored {b.with_suffix('').name}" for b in backups)


def _abort_diagnostics(_: Path, state: dict[str, Any]) -> str:
    runs = [run for run in state["diagnostics"] if not run["finished"] and not run.get("aborted")]
    for run in runs:
        run["aborted"] = True
    return f"aborted {len(runs)} unfinished diagnostics run(s)" if runs else ""


def _start_services(_: Path, state: dict[str, Any]) -> str:
    stopped = [name for name, service in state["services"].items() if not service["running"]]
    for name in stopped:
        state["services"][name]["running"] = True
    return f"started {', '.join(stopped)}" if stopped else ""


_RESTORERS: dict[str, Callable[[Path, dict[str, Any]], str]] = {
    "config": lambda state_dir, _: _restore_backups(sorted((state_dir / "config").glob("*.conf.bak"))),
    "protocol": lambda state_dir, _: _restore_backups(sorted((state_dir / "protocols").glob("*.json.bak"))),
    "diagnostics": _abort_diagnostics,
    "service": _start_services,
}


def export_study(state_dir: Path, study_uid: str, out_dir: Path, now: float) -> int:
    """Copy a study's files into `out_dir`; returns how many."""
    dicom_dir = state_dir / "dicom"
    _state_file(state_dir)
    _known("study", study_uid, (p.name for p in dicom_dir.iterdir() if p.is_dir()))
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted((dicom_dir / study_uid).glob("*.dcm"))
    for file in files:
        shutil.copy2(file, out_dir / file.name)
    with _changing(state_dir) as state:
        state["exports"].append({"study_uid": study_uid, "out_dir": str(out_dir), "files": len(files), "at": now})
    return len(files)


# ---- the examination block -------------------------------------------------------------------------------------

def block(state_dir: Path, lease_s: float, by: str, now: float) -> float:
    """Block examinations until now + lease_s (set or renew the lease); returns the end of the lease."""
    if not 1 <= lease_s <= MAX_LEASE_S:
        raise UsageError(f"--lease-s must be 1-{MAX_LEASE_S} seconds (got {lease_s}); renew the lease to block "
                         "for longer")
    with _changing(state_dir) as state:
        state["block"] = {"until": now + lease_s, "by": by}
    return now + lease_s


def unblock(state_dir: Path) -> None:
    with _changing(state_dir) as state:
        state["block"] = {"until": None, "by": None}


def exam_start(state_dir: Path, now: float) -> None:
    """The technologist starts an examination; refused while blocked. Every attempt is recorded."""
    with _changing(state_dir) as state:
        allowed = not _blocked(state, now)
        state["examinations"].append({"at": now, "allowed": allowed})
    if not allowed:
        raise Refused("examinations are blocked by an active remote service session")


# ---- the command line ------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr: what is wrong, and where the usage is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _run(args: argparse.Namespace, now: float) -> None:
    state_dir: Path = args.state
    command = args.command
    if command == "init":
        init(state_dir, args.studies, args.images, force=args.force)
        print(f"simulated modality at {state_dir}: {args.studies} studies of {args.images} images")
    elif command == "status":
        print(_json_text(read_state(state_dir, now)), end="")
    elif command == "restart-service":
        print(f"{args.name} restarted (restart number {restart_service(state_dir, args.name, now)})")
    elif command == "diagnostics":
        run_diagnostics(state_dir, args.suite, args.seconds, now, lambda line: print(line, flush=True))
    elif command == "set-config":
        set_config(state_dir, args.key, args.value, now)
        print(f"{args.key} = {args.value}")
    elif command == "set-protocol":
        set_protocol(state_dir, args.name, args.field, args.value, now)
        print(f"{args.name}: {args.field} = {args.value}")
    elif command == "restore":
        print(f"restore {args.what}: {restore(state_dir, args.what, now)}")
    elif command == "export-study":
        print(export_study(state_dir, args.study_uid, args.out_dir, now))
    elif command == "block":
        until = block(state_dir, args.lease_s, args.by, now)
        print(f"examinations blocked until {dt.datetime.fromtimestamp(until, dt.UTC):%Y-%m-%d %H:%M:%S} UTC")
    elif command == "unblock":
        unblock(state_dir)
        print("examinations unblocked")
    elif command == "block-status":
        print("blocked" if is_blocked(state_dir, now) else "unblocked")
    else:
        exam_start(state_dir, now)
        print("examination started")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    now = time.time() if args.now is None else args.now
    try:
        _run(args, now)
    except SimError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"{PROG}: {exc.strerror or exc}: {exc.filename or args.state}", file=sys.stderr)
        return 1
    return 0


def _epoch_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"takes seconds since the epoch, e.g. 1800000000.5 (got {text!r})")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, required=True, metavar="DIR", help="the simulated modality's folder")
    parser.add_argument("--now", type=_epoch_seconds, metavar="EPOCH_SECONDS",
                        help="the clock, for tests (default: the real one)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init_ = sub.add_parser("init", help="create a simulated modality at DIR")
    init_.add_argument("--studies", type=int, default=2, help="how many CT studies (default 2)")
    init_.add_argument("--images", type=int, default=3, help="images per study (default 3)")
    init_.add_argument("--force", action="store_true", help="replace an existing simulated modality")
    sub.add_parser("status", help="the state as one JSON object")
    sub.add_parser("restart-service", help="restart a service").add_argument("name", metavar="NAME",
                                                                           help=" | ".join(SERVICES))
    diagnostics = sub.add_parser("diagnostics", help="run a diagnostics suite")
    diagnostics.add_argument("--suite", default="quick", help=" | ".join(DIAGNOSTIC_SUITES) + " (default quick)")
    diagnostics.add_argument("--seconds", type=float, default=0.0, help="how long the run takes (default 0)")
    set_config_ = sub.add_parser("set-config", help="change a setting of modality.conf")
    set_config_.add_argument("key", metavar="KEY", help=" | ".join(CONFIG_DEFAULTS))
    set_config_.add_argument("value", metavar="VALUE")
    set_protocol_ = sub.add_parser("set-protocol", help="change a field of a scan protocol")
    set_protocol_.add_argument("name", metavar="NAME", help=" | ".join(PROTOCOLS))
    set_protocol_.add_argument("field", metavar="FIELD", help=" | ".join(NUMERIC_FIELDS + TEXT_FIELDS))
    set_protocol_.add_argument("value", metavar="VALUE")
    sub.add_parser("restore", help="undo what a task stopped early left").add_argument("what", metavar="WHAT",
                                                                                      help=" | ".join(RESTORABLE))
    export = sub.add_parser("export-study", help="copy a study's DICOM files into OUTDIR")
    export.add_argument("study_uid", metavar="STUDY_UID")
    export.add_argument("out_dir", type=Path, metavar="OUTDIR")
    block_ = sub.add_parser("block", help="block examinations for a lease of N seconds")
    block_.add_argument("--lease-s", type=float, required=True, metavar="N", help=f"1-{MAX_LEASE_S}")
    block_.add_argument("--by", default="servicegate", metavar="WHO", help="who blocks (default servicegate)")
    sub.add_parser("unblock", help="end the examination block")
    sub.add_parser("block-status", help="print `blocked` or `unblocked`")
    sub.add_parser("exam-start", help="start an examination (refused while blocked)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
