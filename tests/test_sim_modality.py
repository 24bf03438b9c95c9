"""The simulated modality (`portal/sim_modality.py`): the modality service tool contract, run as the agent runs
it, a real process per command. Outcomes are read from the state (`read_state`), not from printed text, except
where the printed text is the contract (`block-status`, `status`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from portal.sim_modality import IMAGE_SIZE, init, read_state

NOW = 1_800_000_000.0


def sim(state: Path, *args: str, now: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(state, *args, now=now), capture_output=True, text=True, timeout=30, check=False)


def _argv(state: Path, *args: str, now: float | None = None) -> list[str]:
    clock = ["--now", str(now)] if now is not None else []
    return [sys.executable, "-m", "portal.sim_modality", "--state", str(state), *clock, *args]


@pytest.fixture
def modality(tmp_path: Path) -> Path:
    state = tmp_path / "scanner"
    init(state)
    return state


def test_init_makes_studies_with_planted_patient_data(tmp_path: Path) -> None:
    state = tmp_path / "scanner"
    assert sim(state, "init", "--studies", "3", "--images", "2").returncode == 0

    studies = read_state(state)["studies"]
    assert [s["files"] for s in studies] == [2, 2, 2]
    assert len({s["patient_name"] for s in studies}) == 3
    for study in studies:
        for path in sorted((state / "dicom" / study["study_uid"]).glob("*.dcm")):
            ds = pydicom.dcmread(path)
            assert str(ds.PatientName) == study["patient_name"]
            assert ds.StudyInstanceUID == study["study_uid"]
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert all(ds.get(k) for k in ("PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName"))
            assert len(ds.PixelData) == IMAGE_SIZE * IMAGE_SIZE * 2
    logs = (state / "logs" / "acquisition.log").read_text()  # two of the patients, for the log scrubber
    assert sum(f"Patient {study['patient_name']} (ID " in logs for study in studies) == 2


def test_init_is_deterministic_and_refuses_to_overwrite(tmp_path: Path, modality: Path) -> None:
    init(tmp_path / "other")
    assert read_state(tmp_path / "other")["studies"] == read_state(modality)["studies"]
    sim(modality, "restart-service", "viewer")

    again = sim(modality, "init")
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert read_state(modality)["services"]["viewer"]["restarts"] == 1
    assert sim(modality, "init", "--force").returncode == 0
    assert read_state(modality)["services"]["viewer"]["restarts"] == 0


def test_status_prints_the_state(modality: Path) -> None:
    status = sim(modality, "status", now=NOW)
    assert status.returncode == 0
    assert json.loads(status.stdout) == read_state(modality, NOW)
    assert read_state(modality)["config"]["table_speed"] == "normal"
    assert set(read_state(modality)["protocols"]) == {"head-routine", "chest-low-dose", "abdomen-contrast"}


def test_restart_service_counts_restarts(modality: Path) -> None:
    assert sim(modality, "restart-service", "acquisition", now=NOW).returncode == 0
    assert sim(modality, "restart-service", "acquisition", now=NOW + 5).returncode == 0

    services = read_state(modality)["services"]
    assert services["acquisition"] == {"running": True, "restarts": 2, "last_restart": NOW + 5}
    assert services["viewer"]["restarts"] == 0


def test_set_config_then_restore_puts_the_file_back(modality: Path) -> None:
    conf = modality / "config" / "modality.conf"
    original = conf.read_text()
    assert sim(modality, "set-config", "language", "de", now=NOW).returncode == 0
    assert sim(modality, "set-config", "table_speed", "slow", now=NOW).returncode == 0
    state = read_state(modality)
    assert state["config"]["language"] == "de"
    assert state["config_changes"][0] == {"key": "language", "old": "en", "new": "de", "at": NOW}

    assert sim(modality, "restore", "config", now=NOW + 1).returncode == 0
    assert conf.read_text() == original
    assert not conf.with_name("modality.conf.bak").exists()
    assert sim(modality, "restore", "config", now=NOW + 2).returncode == 0
    restores = read_state(modality)["restores"]
    assert [(r["what"], r["at"]) for r in restores] == [("config", NOW + 1), ("config", NOW + 2)]
    assert restores[1]["detail"] == "nothing to restore"


def test_set_protocol_then_restore_puts_the_protocol_back(modality: Path) -> None:
    protocol = modality / "protocols" / "head-routine.json"
    original = protocol.read_text()
    assert sim(modality, "set-protocol", "head-routine", "kv", "140", now=NOW).returncode == 0
    assert sim(modality, "set-protocol", "head-routine", "rotation_s", "0.75", now=NOW).returncode == 0
    state = read_state(modality)
    assert state["protocols"]["head-routine"]["kv"] == 140
    assert state["protocols"]["head-routine"]["rotation_s"] == 0.75
    assert state["protocol_changes"][0] == {"protocol": "head-routine", "field": "kv", "old": 120, "new": 140,
                                            "at": NOW}

    assert sim(modality, "restore", "protocol", now=NOW).returncode == 0
    assert protocol.read_text() == original
    assert read_state(modality)["restores"][-1]["what"] == "protocol"


def test_diagnostics_killed_mid_run_is_marked_aborted_by_restore(modality: Path) -> None:
    run = subprocess.Popen(_argv(modality, "diagnostics", "--suite", "full", "--seconds", "30"),
                           stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not read_state(modality)["diagnostics"] and time.monotonic() < deadline:
            time.sleep(0.05)
        # A long run holds no lock: other commands (the block lease's renewal) go on meanwhile.
        assert sim(modality, "block", "--lease-s", "10").returncode == 0
        assert run.poll() is None
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=10)
    assert run.returncode == -signal.SIGTERM
    assert read_state(modality)["diagnostics"] == [{"started": pytest.approx(time.time(), abs=60),
                                                   "finished": False, "suite": "full"}]

    assert sim(modality, "restore", "diagnostics").returncode == 0
    state = read_state(modality)
    assert state["diagnostics"][0]["aborted"] is True
    assert state["restores"][0]["what"] == "diagnostics"


def test_diagnostics_run_to_the_end_is_finished(modality: Path) -> None:
    assert sim(modality, "diagnostics", "--seconds", "0.2", now=NOW).returncode == 0
    assert read_state(modality)["diagnostics"] == [{"started": NOW, "finished": True, "suite": "quick"}]


def test_block_lease_lapses_by_itself(modality: Path) -> None:
    assert sim(modality, "block", "--lease-s", "30", "--by", "session-1", now=NOW).returncode == 0
    assert read_state(modality, NOW + 29)["block"] == {"until": NOW + 30, "by": "session-1"}
    assert sim(modality, "block-status", now=NOW + 29).stdout == "blocked\n"
    assert sim(modality, "block-status", now=NOW + 30).stdout == "unblocked\n"
    assert read_state(modality, NOW + 30)["blocked"] is False


def test_exam_start_is_refused_while_blocked_and_allowed_after_unblock(modality: Path) -> None:
    assert sim(modality, "block", "--lease-s", "60", now=NOW).returncode == 0
    refused = sim(modality, "exam-start", now=NOW + 1)
    assert refused.returncode == 3
    assert "blocked" in refused.stderr
    assert sim(modality, "unblock").returncode == 0
    assert sim(modality, "unblock").returncode == 0  # idempotent
    assert sim(modality, "exam-start", now=NOW + 2).returncode == 0

    state = read_state(modality, NOW + 2)
    assert state["blocked"] is False
    assert state["examinations"] == [{"at": NOW + 1, "allowed": False}, {"at": NOW + 2, "allowed": True}]


def test_export_study_copies_its_files(modality: Path, tmp_path: Path) -> None:
    study = read_state(modality)["studies"][0]
    out = tmp_path / "export" / "study"
    assert sim(modality, "export-study", study["study_uid"], str(out), now=NOW).returncode == 0

    assert [str(pydicom.dcmread(p).PatientName) for p in sorted(out.glob("*.dcm"))] == [study["patient_name"]] * 3
    assert read_state(modality)["exports"] == [{"study_uid": study["study_uid"], "out_dir": str(out), "files": 3,
                                                "at": NOW}]


@pytest.mark.parametrize(("args", "named"), [
    (["restart-service", "scanner"], "scanner"),
    (["set-config", "volume", "11"], "volume"),
    (["set-protocol", "knee", "kv", "120"], "knee"),
    (["set-protocol", "head-routine", "pitch", "1"], "pitch"),
    (["set-protocol", "head-routine", "kv", "loud"], "loud"),
    (["restore", "everything"], "everything"),
    (["export-study", "1.2.3", "out"], "1.2.3"),
    (["diagnostics", "--suite", "deep"], "deep"),
    (["block", "--lease-s", "7200"], "7200"),
    (["reboot"], "reboot"),
    (["--now", "never", "status"], "never"),
])
def test_a_bad_argument_exits_2_with_one_line_saying_what_is_wrong(modality: Path, args: list[str],
                                                                   named: str) -> None:
    result = sim(modality, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert named in result.stderr
    state = read_state(modality)
    assert state["config_changes"] == state["protocol_changes"] == state["diagnostics"] == []


def test_a_missing_modality_says_how_to_make_one(tmp_path: Path) -> None:
    result = sim(tmp_path / "nothing", "restart-service", "viewer")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "init" in result.stderr
    assert not (tmp_path / "nothing").exists()


def test_concurrent_commands_lose_no_update(modality: Path) -> None:
    runs = [subprocess.Popen(_argv(modality, "restart-service", "acquisition"), stdout=subprocess.DEVNULL)
            for _ in range(10)]
    assert [run.wait(timeout=30) for run in runs] == [0] * 10
    assert read_state(modality)["services"]["acquisition"]["restarts"] == 10
