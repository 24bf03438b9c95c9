"""`servicegate anonymize` and anonymizer.batch on real files: planted DICOM files, pydicom's test files, a text
file, a truncated file and an ultrasound image, through the real CLI in a subprocess where it matters."""

from __future__ import annotations

import io
import json
import os
import pty
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

import anonymizer.batch
import anonymizer.files
from agent.cli import ProgressLine, format_progress
from anonymizer.batch import BatchReport, Progress, collect_inputs, run_batch
from anonymizer.profile import Option
from tests.dicom_corpus import Planted, find_values, planted_series, write_planted_file

REPO = Path(__file__).resolve().parents[1]
SERIES = 3  # planted instances of one series


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(path)


def cli(*args: str | Path, stderr: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "anonymize", *map(str, args)], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, timeout=300)


def good_folder(root: Path) -> tuple[Path, Planted]:
    """A planted series (file names carry the patient's name, as real exports do) and pydicom's CT_small."""
    folder = root / "in"
    (folder / "series").mkdir(parents=True)
    _, planted = planted_series(folder / "series", SERIES, seed=7)
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "ct_small.dcm")
    return folder, planted


def bad_files(folder: Path) -> dict[str, Path]:
    """A text file, a truncated DICOM file and an ultrasound image without Burned In Annotation."""
    bad = folder / "bad"
    bad.mkdir()
    text = bad / "notes.txt"
    text.write_text("Called the ward about the scan; nothing to add.\n")
    truncated = bad / "truncated.dcm"
    whole = bad / "whole.tmp"
    write_planted_file(whole, seed=11)
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    us = bad / "ultrasound.dcm"
    shutil.copy(pydicom_file("ExplVR_BigEnd.dcm"), us)
    return {"text": text, "truncated": truncated, "ultrasound": us}


def outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# ---- the CLI, in a subprocess --------------------------------------------------------------------------


def test_bad_files_are_refused_listed_and_reported_and_the_rest_goes_through(tmp_path: Path) -> None:
    folder, planted = good_folder(tmp_path)
    bad = bad_files(folder)
    out, report_file, key = tmp_path / "out", tmp_path / "report.json", tmp_path / "site.key"
    result = cli(folder, "--out", out, "--key-file", key, "--report", report_file)

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    refused_lines = [line for line in result.stderr.splitlines() if line.startswith("servicegate: refused ")]
    assert len(refused_lines) == 3, result.stderr
    for path in bad.values():
        line = next(line for line in refused_lines if f" {path}: " in line)
        assert len(line.split(f" {path}: ", 1)[1]) > 10  # a reason, not just a name
    assert "burned-in" in next(line for line in refused_lines if str(bad["ultrasound"]) in line)

    report = json.loads(report_file.read_text())
    assert (report["total"], report["accepted"], report["refused"]) == (SERIES + 4, SERIES + 1, 3)
    assert stat.S_IMODE(report_file.stat().st_mode) == 0o600  # it names input files, which carry names
    by_source = {entry["source"]: entry for entry in report["files"]}
    assert {by_source[str(p)]["status"] for p in bad.values()} == {"refused"}
    assert all(by_source[str(p)]["reason"] for p in bad.values())

    # Outputs: OUT/<study>/<series>/<instance>.dcm, named by the new UIDs, matching their content.
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == SERIES + 1
    for path in written:
        study, series, instance = path.relative_to(out).parts
        ds = pydicom.dcmread(path)
        assert (study, series, instance) == (ds.StudyInstanceUID, ds.SeriesInstanceUID, f"{ds.SOPInstanceUID}.dcm")
        assert ds.StudyInstanceUID.startswith("2.25.")
        assert ds.PatientIdentityRemoved == "YES"
        assert not find_values(path.read_bytes(), planted.values)
        assert not find_values(str(path.relative_to(out)).encode(), planted.values)  # input names carried the patient's
    # Nothing planted reaches a reason, stdout or stderr (only the input paths may, and they stay local).
    places = [{k: v for k, v in e.items() if k not in ("source", "quarantined")} for e in report["files"]]
    assert not find_values(json.dumps(places, ensure_ascii=False).encode(), planted.values)
    for stream in (result.stdout, result.stderr):
        assert not find_values(stream.replace(str(folder), "INPUT").encode(), planted.values)


def test_all_good_exits_0_and_the_default_key_lives_with_the_agents_state(tmp_path: Path) -> None:
    folder, _ = good_folder(tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    result = subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(config), "anonymize", str(folder),
                             "--out", str(tmp_path / "out")], cwd=REPO, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"De-identified {SERIES + 1} of {SERIES + 1} files" in result.stdout
    key = tmp_path / "state" / "keys" / "anonymizer.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(key.read_bytes()) == 32


def test_the_key_file_is_created_0600_and_reused_so_the_uids_stay_the_same(tmp_path: Path) -> None:
    folder, _ = good_folder(tmp_path)
    key = tmp_path / "keys" / "site.key"
    first = cli(folder, "--out", tmp_path / "out1", "--key-file", key, "--quiet")
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""  # --quiet: no summary either
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_bytes()
    second = cli(folder, "--out", tmp_path / "out2", "--key-file", key, "--quiet")
    assert second.returncode == 0, second.stderr
    assert key.read_bytes() == secret
    assert outputs(tmp_path / "out1").keys() == outputs(tmp_path / "out2").keys()
    other = cli(folder, "--out", tmp_path / "out3", "--key-file", tmp_path / "other.key", "--quiet")
    assert other.returncode == 0, other.stderr
    assert not outputs(tmp_path / "out1").keys() & outputs(tmp_path / "out3").keys()  # another key, other UIDs


def test_two_jobs_write_the_same_files_byte_for_byte_as_one(tmp_path: Path) -> None:
    folder, _ = good_folder(tmp_path)
    bad_files(folder)
    key = tmp_path / "site.key"
    one = cli(folder, "--out", tmp_path / "one", "--key-file", key, "--report", tmp_path / "one.json")
    two = cli(folder, "--out", tmp_path / "two", "--key-file", key, "--report", tmp_path / "two.json", "--jobs", "2")
    assert (one.returncode, two.returncode) == (3, 3), two.stderr
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")
    assert len(outputs(tmp_path / "one")) == SERIES + 1

    def outcome(report: Path) -> list[tuple[Any, ...]]:
        return [(f["source"], f["status"], f["reason"]) for f in json.loads(report.read_text())["files"]]

    assert outcome(tmp_path / "one.json") == outcome(tmp_path / "two.json")  # same order, same reasons


@pytest.mark.parametrize(("args", "expected"), [
    (["--option", "retain-uid"], "did you mean 'retain-uids'"),
    (["--option", "retain-long-full-dates", "--option", "retain-long-modified-dates"], "retain-long"),
    (["--jobs", "0"], "--jobs must be at least 1"),
])
def test_usage_errors_exit_2_with_the_fix_and_no_traceback(tmp_path: Path, args: list[str], expected: str) -> None:
    folder, _ = good_folder(tmp_path)
    result = cli(folder, "--out", tmp_path / "out", "--key-file", tmp_path / "site.key", *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    if "did you mean" in expected:
        assert all(o.value in result.stderr for o in Option)  # the allowed names
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_readable_key_file_a_key_inside_the_output_and_no_inputs_are_usage_errors(tmp_path: Path) -> None:
    folder, _ = good_folder(tmp_path)
    key = tmp_path / "site.key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o644)
    shown = cli(folder, "--out", tmp_path / "out", "--key-file", key)
    assert shown.returncode == 2
    assert f"chmod 600 {key}" in shown.stderr

    inside = cli(folder, "--out", tmp_path / "out", "--key-file", tmp_path / "out" / "site.key")
    assert inside.returncode == 2
    assert "inside the output folder" in inside.stderr
    assert not (tmp_path / "out" / "site.key").exists()

    report_inside = cli(folder, "--out", tmp_path / "out", "--key-file", tmp_path / "k2", "--report",
                        tmp_path / "out" / "report.json")
    assert report_inside.returncode == 2
    assert "report" in report_inside.stderr

    (tmp_path / "empty").mkdir()
    empty = cli(tmp_path / "empty", "--out", tmp_path / "out", "--key-file", tmp_path / "k2")
    assert empty.returncode == 2
    assert "no files found" in empty.stderr
    for result in (shown, inside, report_inside, empty):
        assert "Traceback" not in result.stderr


def test_a_missing_input_is_refused_and_the_rest_still_done(tmp_path: Path) -> None:
    folder, _ = good_folder(tmp_path)
    missing = tmp_path / "no-such.dcm"
    result = cli(folder, missing, "--out", tmp_path / "out", "--key-file", tmp_path / "site.key")
    assert result.returncode == 3
    assert f"servicegate: refused {missing}: no such file" in result.stderr
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == SERIES + 1


def test_progress_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    folder, _ = good_folder(tmp_path)
    bad_files(folder)
    key = tmp_path / "site.key"
    piped = cli(folder, "--out", tmp_path / "piped", "--key-file", key)
    assert " files, " not in piped.stderr
    assert "\r" not in piped.stderr

    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "anonymize", str(folder), "--out", str(tmp_path / "tty"),
             "--key-file", str(key)], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=300) == 3
        assert process.stdout is not None
        process.stdout.close()
    finally:
        os.close(master)
    total = SERIES + 4
    text = shown.decode()
    assert f"\r{total} of {total} files, " in text
    assert " MB/s, 3 refused" in text
    assert "servicegate: refused " in text  # the refusals follow the progress line, on lines of their own

    quiet = subprocess.run([sys.executable, "-m", "agent.cli", "anonymize", str(folder), "--out", str(tmp_path / "q"),
                            "--key-file", str(key), "--quiet"], cwd=REPO, capture_output=True, timeout=300)
    assert b" files, " not in quiet.stderr


def test_the_progress_line_format_and_its_redraws() -> None:
    assert format_progress(Progress(done=0, total=10, bytes_done=0, refused=0, elapsed_s=0.0)) == \
        "0 of 10 files, -- MB/s, 0 refused"
    assert format_progress(Progress(done=4, total=10, bytes_done=50_000_000, refused=1, elapsed_s=2.0)) == \
        "4 of 10 files, 25.0 MB/s, 1 refused"
    stream = io.StringIO()
    line = ProgressLine(stream)
    for done in range(11):  # drawn at once: the first, then at most ten a second, and always the last
        line(Progress(done=done, total=10, bytes_done=done, refused=0, elapsed_s=1.0))
    line.close()
    drawn = stream.getvalue()
    assert drawn.startswith("\r0 of 10 files")
    assert "\r10 of 10 files" in drawn
    assert drawn.count("\r") < 11
    assert drawn.endswith("\n")


# ---- the library ---------------------------------------------------------------------------------------


def test_collect_inputs_walks_sorted_keeps_missing_inputs_and_follows_no_link_out(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "b").mkdir(parents=True)
    (tree / "a").mkdir()
    for name in ("b/2.dcm", "b/1.dcm", "a/z.dcm", "top.dcm"):
        (tree / name).write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.dcm").write_bytes(b"x")
    (tree / "link-out.dcm").symlink_to(outside / "secret.dcm")
    (tree / "dir-out").symlink_to(outside)
    (tree / "link-in.dcm").symlink_to(tree / "a" / "z.dcm")  # the same file again: taken once
    os.mkfifo(tree / "fifo")
    missing = tmp_path / "missing.dcm"

    found = collect_inputs([tree, missing, tree / "top.dcm"])
    assert found == [tree / "a" / "z.dcm", tree / "b" / "1.dcm", tree / "b" / "2.dcm", tree / "top.dcm", missing]
    assert collect_inputs([outside / "secret.dcm"]) == [outside / "secret.dcm"]  # named: taken


def test_run_batch_refuses_one_file_that_breaks_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = good_folder(tmp_path)
    inputs = collect_inputs([folder])
    real = anonymizer.files.deidentify_file
    victim = inputs[1]

    def flaky(src: Path, *args: Any, **kw: Any) -> Any:
        if src == victim:
            raise ValueError("Quixote")  # a message may quote a value: it must not reach the reason
        return real(src, *args, **kw)

    monkeypatch.setattr(anonymizer.batch, "deidentify_file", flaky)
    seen: list[Progress] = []
    report = run_batch(inputs, tmp_path / "out", options=frozenset(), key_file=tmp_path / "site.key",
                       progress=seen.append)
    assert (report.accepted, report.refused) == (len(inputs) - 1, 1)
    reason = report.results[1].reason or ""
    assert reason.startswith("internal error: ValueError at test_anonymizer_batch.py:")
    assert "Quixote" not in reason
    assert [p.done for p in seen] == list(range(len(inputs) + 1))
    assert seen[-1].refused == 1
    assert seen[-1].bytes_done == report.bytes_in > 0
    assert report.quarantine_dir == (tmp_path / "out.quarantine").resolve()  # next to the output, not in it
    as_dict = report.to_dict()
    assert (as_dict["accepted"], as_dict["refused"], len(as_dict["files"])) == (len(inputs) - 1, 1, len(inputs))
    json.dumps(as_dict)  # serialisable as it is


_REAL_WORK = anonymizer.batch._work  # taken before any test patches it (a forked worker inherits the patch)


def _crash_on_poison(paths: list[Path], out_dir: Path, quarantine: Path) -> Any:
    """Stands in for anonymizer.batch._work in the worker processes: dies outright on a file named poison*."""
    if any(path.name.startswith("poison") for path in paths):
        os._exit(70)
    return _REAL_WORK(paths, out_dir, quarantine)


def test_a_worker_that_dies_costs_only_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = good_folder(tmp_path)
    shutil.copy(pydicom_file("MR_small.dcm"), folder / "poison.dcm")
    inputs = collect_inputs([folder])
    # The pool pickles the task function by name, so the workers import this module and run the stand-in.
    monkeypatch.setattr(anonymizer.batch, "_work", _crash_on_poison)
    report: BatchReport = run_batch(inputs, tmp_path / "out", options=frozenset(), key_file=tmp_path / "site.key",
                                    jobs=2)
    by_source = {r.source: r for r in report.results}
    assert [r.source for r in report.results] == inputs
    poisoned = by_source[folder / "poison.dcm"]
    assert poisoned.status == "refused"
    assert (poisoned.reason or "").startswith("internal error: the worker process stopped")
    assert report.accepted == len(inputs) - 1
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == len(inputs) - 1


def test_run_batch_keeps_the_key_out_of_the_output(tmp_path: Path) -> None:
    from anonymizer.errors import KeyFileError

    with pytest.raises(KeyFileError, match="inside the output folder"):
        run_batch([], tmp_path / "out", options=frozenset(), key_file=tmp_path / "out" / "k.key")
    with pytest.raises(ValueError, match="quarantine .* inside the output folder"):
        run_batch([], tmp_path / "out", options=frozenset(), key_file=tmp_path / "k.key",
                  quarantine_dir=tmp_path / "out" / "quarantine")
    with pytest.raises(ValueError, match="at least 1"):
        run_batch([], tmp_path / "out", options=frozenset(), key_file=tmp_path / "k.key", jobs=0)


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_output_that_cannot_be_written_stops_the_batch_with_the_reason(tmp_path: Path, jobs: int) -> None:
    folder, _ = good_folder(tmp_path)
    key = tmp_path / "site.key"
    inputs = collect_inputs([folder])  # ct_small.dcm first, then the planted series
    first = run_batch(inputs, tmp_path / "first", options=frozenset(), key_file=key)
    assert first.results[1].output is not None
    study = first.results[1].output.relative_to(tmp_path / "first").parts[0]
    # A file where the series' study folder must go: writing it fails as a full disk or a read-only
    # folder would (which root, running the tests in CI, cannot be made to meet).
    out = tmp_path / "out"
    out.mkdir()
    (out / study).write_bytes(b"")

    report = run_batch(inputs, out, options=frozenset(), key_file=key, jobs=jobs)
    assert report.stopped is not None
    assert report.stopped.startswith("cannot write the output: Not a directory")
    assert [r.source for r in report.results] == inputs[:1]  # CT_small is another study: written
    assert report.results[0].status == "accepted"
    assert report.not_done == inputs[1:]
    assert report.to_dict()["total"] == len(inputs)


def test_the_cli_says_why_it_stopped_and_exits_1(tmp_path: Path) -> None:
    folder, _ = good_folder(tmp_path)
    key = tmp_path / "site.key"
    first = run_batch(collect_inputs([folder]), tmp_path / "first", options=frozenset(), key_file=key)
    assert first.results[1].output is not None
    out = tmp_path / "out"
    out.mkdir()
    (out / first.results[1].output.relative_to(tmp_path / "first").parts[0]).write_bytes(b"")
    result = cli(folder, "--out", out, "--key-file", key, "--report", tmp_path / "report.json")
    assert result.returncode == 1
    assert f"servicegate: stopped after 1 of {SERIES + 1} files: cannot write the output" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads((tmp_path / "report.json").read_text())["not_done"] == [str(p) for p in
                                                                               collect_inputs([folder])[1:]]


def test_a_sites_safe_private_list_extends_the_standards(tmp_path: Path) -> None:
    source = tmp_path / "in" / "ct.dcm"
    source.parent.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    block = ds.private_block(0x0041, "SITE SCANNER 1", create=True)
    block.add_new(0x10, "DS", "2.5")  # a dose factor the site knows to be safe
    ds.save_as(source)
    listing = tmp_path / "safe.csv"
    listing.write_text('Data Element,Private Creator,VR,VM,Meaning\n"(0041,xx10)",SITE SCANNER 1,DS,1,Dose factor\n')
    key = tmp_path / "site.key"

    def private_value(out: Path) -> object:
        result = pydicom.dcmread(next(out.rglob("*.dcm")))
        return result.get((0x0041, 0x1010)).value if (0x0041, 0x1010) in result else None

    kept = cli(source, "--out", tmp_path / "kept", "--option", "retain-safe-private", "--safe-private", listing,
               "--key-file", key, "--quiet")
    assert kept.returncode == 0, kept.stderr
    assert private_value(tmp_path / "kept") == "2.5"
    plain = cli(source, "--out", tmp_path / "plain", "--option", "retain-safe-private", "--key-file", key, "--quiet")
    assert plain.returncode == 0, plain.stderr
    assert private_value(tmp_path / "plain") is None  # not on the standard's list
    listing.write_text("Data Element,Private Creator,VR,VM,Meaning\n(0040,xx10),X,DS,1,even group\n")
    bad = cli(source, "--out", tmp_path / "bad", "--safe-private", listing, "--key-file", key, "--quiet")
    assert bad.returncode == 2
    assert "safe.csv" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_agent_toml_sets_the_anonymizer_defaults_and_the_command_line_overrides_them(tmp_path: Path) -> None:
    source = tmp_path / "in" / "ct.dcm"
    source.parent.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.private_block(0x0041, "SITE SCANNER 1", create=True).add_new(0x10, "DS", "2.5")
    ds.save_as(source)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "safe.csv").write_text("Data Element,Private Creator,VR,VM,Meaning\n"
                                                '"(0041,xx10)",SITE SCANNER 1,DS,1,Dose factor\n')
    config = tmp_path / "agent.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n[anonymizer]\n'
                      'options = ["retain-safe-private", "retain-uids"]\nsafe_private = "site/safe.csv"\njobs = 2\n')

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(config), "anonymize", str(source),
                               *map(str, args)], cwd=REPO, text=True, capture_output=True, timeout=300)

    def written(out: Path) -> pydicom.Dataset:
        return pydicom.dcmread(next(out.rglob("*.dcm")))

    from_config = run("--out", tmp_path / "a", "--report", tmp_path / "a.json", "--quiet")
    assert from_config.returncode == 0, from_config.stderr
    result = written(tmp_path / "a")
    assert result[0x0041, 0x1010].value == "2.5"  # safe_private, relative to agent.toml, under retain-safe-private
    assert result.SOPInstanceUID == ds.SOPInstanceUID  # retain-uids
    assert json.loads((tmp_path / "a.json").read_text())["options"] == ["retain-safe-private", "retain-uids"]
    overridden = run("--out", tmp_path / "b", "--option", "retain-safe-private", "--quiet")  # no retain-uids now
    assert overridden.returncode == 0, overridden.stderr
    assert written(tmp_path / "b").SOPInstanceUID != ds.SOPInstanceUID
    assert written(tmp_path / "b")[0x0041, 0x1010].value == "2.5"

    config.write_text(config.read_text().replace('"retain-uids"', '"retain-uid"'))
    bad = run("--out", tmp_path / "c")
    assert bad.returncode == 2
    assert f"{config}: [anonymizer] options" in bad.stderr
    assert "did you mean 'retain-uids'" in bad.stderr
    assert "Traceback" not in bad.stderr
