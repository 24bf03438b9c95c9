"""The anonymizer against its peers (dicognito, deid, dicom-anonymizer): what each leaks, and how fast each is.

Two parts, both on corpora from `tests.dicom_corpus` (identifying values planted everywhere a de-identifier
can miss them), all generated on disk in a temporary folder:

- **leaks**: `LEAK_FILES` planted files (seeds 0..N-1, named `<Family>_<Given>_<seed>.dcm` as exports often
  are) through ServiceGate (`run_batch`, Basic profile) and each peer. Every output file's raw bytes are
  searched for its own input's planted values (`find_values(bytes, values, ignore_case=True)`) and the hits
  grouped by kind; the parsed output is searched with `locate` to say where each survivor sits.
- **speed**: three corpora: "large" (`LARGE_FILES` files of `LARGE_SIDE`² 16-bit pixels), "small"
  (`SMALL_FILES` 16x16 planted files, headers dominate) and "multiframe" (one file of `MF_FRAMES` frames of
  512x512). Each tool runs as its own subprocess: ServiceGate's CLI with --jobs 1 and 2, each peer, a bare
  pydicom read + write loop, and `cp -r`. Wall time, files/s, MB/s (input MB, 10**6 bytes), and peak RSS: the
  largest single process (GNU time's %M) and the whole process tree (psutil, polled every `POLL_S`).

The big files are written without holding their pixel data in memory: the planted dataset is serialised with a
small placeholder pixel value, and the file is spliced: everything before it, the real pixel data element
header, the frames streamed from one cached frame, everything after it (private 7FE1 group, signatures, padding).
Pixel values stay below 4096, as in the corpus, so no text can appear in pixel bytes.
"""

from __future__ import annotations

import array
import collections
import io
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import psutil
from pydicom import dcmread, dcmwrite
from pydicom.datadict import keyword_for_tag

from benchmarks import peers
from tests.dicom_corpus import PatientIdentity, Planted, find_values, locate, planted_dataset, write_planted_file

# ---- corpus sizes (the whole anonymizer benchmark runs in ~5 minutes on the 2-core machine) ----------------
LEAK_FILES = 20
LARGE_FILES = 300
LARGE_SIDE = 1344  # 1344 x 1344 x 2 bytes = 3.6 MB a file: 300 files = 1.08 GB
SMALL_FILES = 1000
MF_SIDE = 512
MF_FRAMES = 954  # 954 x 512 x 512 x 2 bytes = 500 MB
POLL_S = 0.02
REPEATS = 2  # each tool runs this often on each corpus; the table keeps the fastest run
KINDS = ("name", "id", "birth_date", "contact", "staff", "uid", "date", "institution", "device")

SERVICEGATE = "ServiceGate"
_BIN = Path(sys.executable).parent
TIME = "/usr/bin/time"  # GNU time (Debian package "time")


# ---- corpora -------------------------------------------------------------------------------------------------


@cache
def _frame(rows: int, columns: int) -> bytes:
    """One frame of the corpus's pixel pattern, (r*7 + c*13) % 4096, little-endian 16-bit."""
    pixels = array.array("H", ((r * 7 + c * 13) % 4096 for r in range(rows) for c in range(columns)))
    if sys.byteorder == "big":
        pixels.byteswap()
    return pixels.tobytes()


def write_big_planted(path: Path, seed: int, rows: int, columns: int, frames: int = 1) -> int:
    """A planted file (all of `planted_dataset(seed)`'s values) with a large image, streamed to disk. Returns
    its size. The pixel data element is spliced in, so only one frame is ever in memory."""
    ds, _ = planted_dataset(seed)
    ds.Rows, ds.Columns = rows, columns
    if frames > 1:
        ds.NumberOfFrames = frames
    marker = bytes(range(64))  # never text: bytes 0x00-0x3F in a fixed order
    ds.PixelData = marker
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    tag_vr = b"\xe0\x7f\x10\x00OW\x00\x00"
    placeholder = tag_vr + struct.pack("<I", len(marker)) + marker
    if data.count(placeholder) != 1:
        raise RuntimeError("the pixel data placeholder is not unique: cannot splice the big file")
    at = data.index(placeholder)
    frame = _frame(rows, columns)
    with path.open("wb") as handle:
        handle.write(data[:at])
        handle.write(tag_vr + struct.pack("<I", len(frame) * frames))
        for _ in range(frames):
            handle.write(frame)
        handle.write(data[at + len(placeholder):])
    return path.stat().st_size


def leak_corpus(directory: Path, n: int = LEAK_FILES) -> dict[Path, Planted]:
    directory.mkdir(parents=True, exist_ok=True)
    planted = {}
    for seed in range(n):
        identity = PatientIdentity.from_seed(seed)
        path = directory / f"{identity.family}_{identity.given}_{seed:02d}.dcm"
        planted[path] = write_planted_file(path, seed)
    return planted


def make_speed_corpora(root: Path) -> dict[str, Path]:
    large, small, multi = root / "large", root / "small", root / "multiframe"
    for folder in (large, small, multi):
        folder.mkdir(parents=True)
    for i in range(LARGE_FILES):
        write_big_planted(large / f"large_{i:04d}.dcm", i, LARGE_SIDE, LARGE_SIDE)
    for i in range(SMALL_FILES):
        write_planted_file(small / f"small_{i:05d}.dcm", i)
    write_big_planted(multi / "multiframe.dcm", 7, MF_SIDE, MF_SIDE, MF_FRAMES)
    return {"large": large, "small": small, "multiframe": multi}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# ---- leaks ---------------------------------------------------------------------------------------------------


@dataclass
class LeakResult:
    tool: str
    files: int
    failed: int = 0  # the tool crashed on the file (peers), or refused it (ServiceGate)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)  # kind -> files with a survivor
    any_leak: int = 0
    name_in_file_name: int = 0
    places: collections.Counter[str] = field(default_factory=collections.Counter)  # where survivors sit, per file


def _place(place: str) -> str:
    return re.sub(r"\[\d+\]", "[n]", place)


def _named(place: str) -> str:
    """`place` with the keyword of its last standard element: `(0008,1030)` -> `(0008,1030) StudyDescription`."""
    last = re.findall(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)", place)
    if not last:
        return place
    keyword = keyword_for_tag(int(last[-1][0] + last[-1][1], 16))
    return f"{place} {keyword}" if keyword and place.endswith(")") else place


def analyse(tool: str, pairs: Iterable[tuple[Path, Path | None, str | None]], planted: dict[Path, Planted],
            out_dir: Path) -> LeakResult:
    result = LeakResult(tool, 0)
    for source, output, error in pairs:
        result.files += 1
        values = planted[source]
        if output is None:
            result.failed += 1
            result.failures[re.sub(r":\d+:.*", "", error or "refused")] += 1
            continue
        name_hits = find_values(str(output.relative_to(out_dir)).encode(), values.values, ignore_case=True)
        result.name_in_file_name += bool(name_hits)
        survivors = find_values(output.read_bytes(), values.values, ignore_case=True)
        if not survivors:
            continue
        result.any_leak += 1
        for kind in {values.kinds[v] for v in survivors}:
            result.by_kind[kind] += 1
        try:
            ds = dcmread(output, force=True)
            found = locate(ds, survivors, ignore_case=True)
        except Exception:  # an output pydicom cannot parse: its raw hits above still count
            found = {}
        kinds_at: dict[str, set[str]] = collections.defaultdict(set)
        for value, where in found.items():
            for place in where:
                kinds_at[_place(place)].add(values.kinds[value])
        unparsed = {values.kinds[v] for v in survivors - set(found)}
        if unparsed:
            kinds_at["raw bytes only (in no parsed value)"] |= unparsed
        # A sequence pydicom has not parsed yet is searched raw as well as item by item: keep the deepest place.
        for place, kinds in kinds_at.items():
            if not any(q != place and q.startswith(place + "[") for q in kinds_at):
                result.places[f"{_named(place)} ({', '.join(sorted(kinds))})"] += 1
    return result


def run_servicegate_leaks(planted: dict[Path, Planted], out_dir: Path, key_file: Path) -> LeakResult:
    from anonymizer.batch import run_batch

    batch = run_batch(sorted(planted), out_dir, options=frozenset(), key_file=key_file, jobs=1,
                      quarantine_dir=out_dir.parent / "sg-quarantine")
    pairs = [(Path(r.source), Path(r.output) if r.output else None, r.reason) for r in batch.results]
    return analyse(SERVICEGATE, pairs, planted, out_dir)


def run_peer_leaks(tool: str, runner: Path, in_dir: Path, planted: dict[Path, Planted], work: Path) -> LeakResult:
    out_dir, manifest = work / f"out-{tool}", work / f"{tool}.json"
    with (work / f"{tool}.log").open("wb") as log:
        subprocess.run(peers.command(runner, tool, in_dir, out_dir, manifest), check=True, stdout=log, stderr=log)
    pairs = [(Path(str(r["input"])), Path(str(r["output"])) if r["output"] else None, r["error"])
             for r in peers.read_manifest(manifest)]
    return analyse(tool, pairs, planted, out_dir)


def leak_table(results: list[LeakResult]) -> str:
    head = ["tool", *KINDS, "any kind", "failed / refused", "patient name in output file name"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.tool, *(str(r.by_kind.get(k, 0)) for k in KINDS), str(r.any_leak), str(r.failed),
                 str(r.name_in_file_name)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def leak_places(results: list[LeakResult], top: int = 5) -> str:
    lines = []
    for r in results:
        if r.failures:
            lines.append(f"- **{r.tool}** failed on: " + "; ".join(f"{n} x {e}" for e, n in r.failures.items()))
        if not r.places:
            lines.append(f"- **{r.tool}**: no planted value survived in any output.")
            continue
        ranked = sorted(r.places.items(), key=lambda item: (-item[1], item[0]))
        lines.append(f"- **{r.tool}**: values survived in {len(ranked)} distinct places; the {top} most common "
                     f"(files out of {r.files - r.failed}; ties in element order):")
        lines.extend(f"  - `{place}`: {n}" for place, n in ranked[:top])
    return "\n".join(lines)


def all_places(results: list[LeakResult]) -> str:
    """Every place where a planted value survived, per peer: the evidence behind the table."""
    lines = []
    for r in results:
        if r.places:
            ranked = sorted(r.places.items(), key=lambda item: (-item[1], item[0]))
            lines.append(f"<details><summary>{r.tool}: all {len(ranked)} places</summary>\n")
            lines.extend(f"- `{place}`: {n}" for place, n in ranked)
            lines.append("\n</details>\n")
    return "\n".join(lines)


def bench_leaks(root: Path, versions: dict[str, str]) -> str:
    work = root / "leaks"
    in_dir = work / "in"
    planted = leak_corpus(in_dir)
    runner = peers.write_runner(work)
    results = [run_servicegate_leaks(planted, work / "out-servicegate", work / "key")]
    results += [run_peer_leaks(tool, runner, in_dir, planted, work) for tool in peers.PEERS]
    values = sum(len(p.values) for p in planted.values())
    return (f"Leak corpus: {LEAK_FILES} planted files (`tests.dicom_corpus.write_planted_file`, seeds "
            f"0..{LEAK_FILES - 1}), {values} planted values in all. Cells: files (of {LEAK_FILES}) in whose output "
            f"bytes at least one value of that kind survived (case-insensitive).\n\n{leak_table(results)}\n\n"
            f"{leak_places(results)}\n\n{all_places(results)}")


# ---- speed ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    tool: str
    wall_s: float
    rss_max: int  # bytes, the largest single process (GNU time's %M)
    rss_tree: int  # bytes, the whole process tree at its peak (polled)
    ok: int
    failed: int
    note: str = ""


def measure(cmd: list[str], log: Path) -> tuple[float, int, int, int]:
    """Run `cmd`; wall seconds, peak RSS of its largest process, peak RSS of its process tree, exit code."""
    peak = peak_single = 0
    done = threading.Event()
    # GNU time reports the child's ru_maxrss from wait4, the largest of the child and its reaped descendants.
    # It must come from a small process: a child forked straight from this one keeps this Python's RSS as its
    # high-water mark across exec.
    rss_file = log.with_suffix(".maxrss")
    with log.open("wb") as out:
        start = time.perf_counter()
        timed = Path(TIME).exists()
        wrapper = [TIME, "-f", "%M", "-o", str(rss_file)] if timed else []
        proc = subprocess.Popen([*wrapper, *cmd], stdout=out, stderr=out)

        def poll() -> None:
            nonlocal peak, peak_single
            try:
                parent = psutil.Process(proc.pid)
            except psutil.NoSuchProcess:
                return
            while not done.is_set():
                total = 0
                try:
                    for p in [parent, *parent.children(recursive=True)]:
                        try:
                            rss = p.memory_info().rss
                        except psutil.NoSuchProcess:
                            continue
                        total += rss
                        if p.pid != parent.pid or not timed:  # GNU time itself is not the tool
                            peak_single = max(peak_single, rss)
                except psutil.NoSuchProcess:
                    break
                peak = max(peak, total)
                done.wait(POLL_S)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        proc.wait()
        wall = time.perf_counter() - start
        done.set()
        thread.join()
    largest = int(rss_file.read_text().split()[-1]) * 1024 if timed else peak_single  # polled: may miss a spike
    return wall, largest, peak, proc.returncode


def _tools(runner: Path, key_file: Path) -> list[tuple[str, list[str] | None]]:
    """(tool, command template with IN/OUT/MANIFEST placeholders)."""
    servicegate = [str(_BIN / "servicegate"), "anonymize", "IN", "--out", "OUT", "--key-file", str(key_file),
                   "--quiet", "--report", "MANIFEST"]
    tools: list[tuple[str, list[str] | None]] = [
        (f"{SERVICEGATE} --jobs 1", [*servicegate, "--jobs", "1"]),
        (f"{SERVICEGATE} --jobs 2", [*servicegate, "--jobs", "2"]),
    ]
    tools += [(tool, peers.command(runner, tool, Path("IN"), Path("OUT"), Path("MANIFEST")))
              for tool in (*peers.PEERS, peers.BASELINE)]
    tools.append(("cp -r", ["cp", "-r", "IN", "OUT"]))
    # ServiceGate fsyncs every output before it names it; the peers and cp leave their writes in the page cache.
    tools.append(("cp -r, then sync", ["sh", "-c", 'cp -r "$0" "$1" && sync', "IN", "OUT"]))
    # The I/O alone of what ServiceGate must do: each file copied and on disk before the next.
    tools.append((COPY_FSYNC, [sys.executable, "-c", _COPY_FSYNC, "IN", "OUT"]))
    return tools


COPY_FSYNC = "copy, fdatasync each file"
_COPY_FSYNC = """
import os, shutil, sys
src, dst = sys.argv[1:3]
for folder, _, names in os.walk(src):
    target = os.path.join(dst, os.path.relpath(folder, src))
    os.makedirs(target, exist_ok=True)
    for name in sorted(names):
        out = shutil.copyfile(os.path.join(folder, name), os.path.join(target, name))  # sendfile: in the kernel
        fd = os.open(out, os.O_RDONLY)
        os.fdatasync(fd)
        os.close(fd)
"""


def _outcome(tool: str, manifest: Path, n_inputs: int, rc: int) -> tuple[int, int]:
    import json

    if tool.startswith(SERVICEGATE):
        report = json.loads(manifest.read_text())
        return int(report["accepted"]), int(report["refused"])
    if tool.startswith("cp -r") or tool == COPY_FSYNC:
        return (n_inputs, 0) if rc == 0 else (0, n_inputs)
    files = peers.read_manifest(manifest) if manifest.exists() else []
    failed = sum(1 for f in files if f["output"] is None)
    return len(files) - failed, failed + n_inputs - len(files)


def bench_speed(root: Path, corpora: dict[str, Path], log: bool = True) -> dict[str, tuple[int, int, list[Run]]]:
    runner = peers.write_runner(root)
    key_file = root / "speed.key"
    results: dict[str, tuple[int, int, list[Run]]] = {}
    for name, folder in corpora.items():
        inputs = _files(folder)
        size = sum(p.stat().st_size for p in inputs)
        best: dict[str, Run] = {}
        for repeat in range(REPEATS):  # interleaved, so that a noisy minute does not hit one tool only
            for tool, template in _tools(runner, key_file):
                out, manifest = root / "out", root / "manifest.json"
                shutil.rmtree(out, ignore_errors=True)
                manifest.unlink(missing_ok=True)
                assert template is not None
                cmd = [{"IN": str(folder), "OUT": str(out), "MANIFEST": str(manifest)}.get(a, a) for a in template]
                subprocess.run(["sync"], check=False)  # the previous tool's dirty pages are not this one's cost
                wall, rss_max, rss_tree, rc = measure(cmd, root / f"{name}-{tool.replace(' ', '_')}.log")
                ok, failed = _outcome(tool, manifest, len(inputs), rc)
                note = f"exit {rc}" if rc not in (0, 3) else ""
                run = Run(tool, wall, rss_max, rss_tree, ok, failed, note)
                if log:
                    print(f"bench: {name} #{repeat + 1}: {tool}: {wall:.1f} s, {ok} ok, {failed} failed {note}",
                          file=sys.stderr)
                if tool in best:  # the fastest run's time; the highest memory of any run
                    kept = best[tool]
                    run.rss_max, run.rss_tree = max(run.rss_max, kept.rss_max), max(run.rss_tree, kept.rss_tree)
                    if kept.wall_s <= wall:
                        kept.rss_max, kept.rss_tree = run.rss_max, run.rss_tree
                        continue
                best[tool] = run
        runs = list(best.values())
        shutil.rmtree(root / "out", ignore_errors=True)
        results[name] = (len(inputs), size, runs)
    return results


def speed_table(name: str, n_files: int, size: int, runs: list[Run]) -> str:
    mbs = {r.tool: size / 1e6 / r.wall_s for r in runs}
    fastest_peer = max(peers.PEERS, key=lambda t: mbs[t])
    lines = [f"**{name}**: {n_files} files, {size / 1e6:,.0f} MB; fastest peer: {fastest_peer}", "",
             "| tool | ok / failed | wall s | files/s | MB/s | peak RSS, largest process | peak RSS, process tree "
             f"| x fastest peer ({fastest_peer}) | x pydicom round trip | x cp -r |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.tool} | {r.ok} / {r.failed}{' ' + r.note if r.note else ''} | {r.wall_s:.1f} "
                     f"| {n_files / r.wall_s:,.1f} | {mbs[r.tool]:,.1f} | {r.rss_max / 2**20:,.0f} MiB "
                     f"| {r.rss_tree / 2**20:,.0f} MiB | {mbs[r.tool] / mbs[fastest_peer]:.2f} "
                     f"| {mbs[r.tool] / mbs[peers.BASELINE]:.2f} | {mbs[r.tool] / mbs['cp -r']:.2f} |")
    return "\n".join(lines)


def targets(results: dict[str, tuple[int, int, list[Run]]]) -> str:
    """The issue's targets, each with the figures it rests on (ServiceGate's best of --jobs 1 and 2)."""

    def rate(name: str, tool: str) -> float:
        n, size, runs = results[name]
        return size / next(r.wall_s for r in runs if r.tool == tool)

    def best_sg(name: str) -> tuple[str, float]:
        tool = max((f"{SERVICEGATE} --jobs 1", f"{SERVICEGATE} --jobs 2"), key=lambda t: rate(name, t))
        return tool, rate(name, tool)

    def fastest_peer(name: str) -> float:
        return max(rate(name, t) for t in peers.PEERS)

    lines = []

    def check(label: str, value: float, goal: float, unit: str = "x", below: bool = False) -> None:
        met = value < goal if below else value >= goal
        lines.append(f"- {label}: {value:.2f}{unit} (target {'<' if below else '>='} {goal}{unit}): "
                     f"{'**met**' if met else '**not met**'}")

    if "large" in results:
        tool, sg = best_sg("large")
        check(f"large corpus, {tool} vs the fastest peer", sg / fastest_peer("large"), 3)
        check(f"large corpus, {tool} vs the bare pydicom round trip", sg / rate("large", peers.BASELINE), 1.5)
    if "small" in results:
        tool, sg = best_sg("small")
        check(f"small files, {tool} vs the fastest peer", sg / fastest_peer("small"), 2)
    if "multiframe" in results:
        tool = f"{SERVICEGATE} --jobs 1"
        check(f"500 MB file, {tool} vs cp -r MB/s", rate("multiframe", tool) / rate("multiframe", "cp -r"), 0.5)
        runs = results["multiframe"][2]
        rss = next(r.rss_max for r in runs if r.tool == tool) / 2**20
        check(f"500 MB file, {tool} peak RSS", rss, 150, unit=" MiB", below=True)
    return "\n".join(lines)


def main(parts: Iterable[str] = ("leaks", "speed"), command: str = "python -m benchmarks --only anonymizer") -> int:
    parts = set(parts)
    versions = peers.ensure_env()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"## Anonymizer vs peers ({started})\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, {platform.platform()}; command: `{command}`\n")
    print("Peers (in .bench-venv): " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "\n")
    with tempfile.TemporaryDirectory(prefix="sg-anon-bench-", dir=os.environ.get("SG_BENCH_DIR")) as tmp:
        root = Path(tmp)
        if "leaks" in parts:
            print("### What survives de-identification\n")
            print(bench_leaks(root, versions), flush=True)
        if "speed" in parts:
            t0 = time.perf_counter()
            corpora = make_speed_corpora(root / "corpora")
            print(f"bench: corpora generated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            (root / "speed").mkdir()
            results = bench_speed(root / "speed", corpora)
            print("### Speed\n")
            for name, (n_files, size, runs) in results.items():
                print(speed_table(name, n_files, size, runs) + "\n")
            print("Targets (issue 3):\n")
            print(targets(results) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
