"""Many files at once: collect the inputs, de-identify each one (in several processes if asked), report.

One bad file never stops a batch. `deidentify_file` already turns a bad input into a refusal; what is
left here is the unexpected: an exception inside it, or a worker process that dies (a crash, the
out-of-memory killer). Either refuses that one file with "internal error: ..." and the batch goes on.
What does stop a batch is an output that cannot be written (disk full, no permission): `deidentify_file`
raises OSError only for that, and every following file would fail the same way, so the batch ends there
and says why, listing the files it never tried.

Why processes and not threads: de-identification is pure Python over pydicom and holds the GIL, so
threads would not use a second core. The parent builds the Profile once (creating the key file on a
fresh install, so no two workers race to create two different keys) and hands it to every worker in
the pool's initializer.

Why a worker crash is handled the way it is: when a worker dies, the pool is broken and every file in
flight fails alike, so the pool cannot say which file killed it. Those files are then retried one at a
time, each in a fresh one-worker pool: the file that crashes again is refused, the innocent ones come
through, and the rest of the batch continues in a new pool.

The report names input files by their local path and refusals by place, never by value. Input file
names can carry patient names (exports are often named that way), so the report stays on the device,
like the quarantine, and neither belongs inside the output folder that leaves.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anonymizer.deidentify import Profile
from anonymizer.errors import KeyFileError
from anonymizer.files import FileResult, deidentify_file, fsync_folders, output_folders
from anonymizer.pixels import PixelRule
from anonymizer.profile import Option, SafePrivate, safe_private_list
from anonymizer.pseudonyms import Pseudonymizer

# Tasks handed to the pool ahead of the workers: enough to keep every worker busy, few enough that a
# worker crash leaves only a handful of suspects to retry one by one (see the module docstring).
IN_FLIGHT_PER_JOB = 2
# Files per task, at most: fewer round trips between the parent and the workers (a small file takes a few
# milliseconds, about what a round trip costs); one file a task when there are few files.
MAX_FILES_PER_TASK = 8


@dataclass(frozen=True)
class Progress:
    """Where a batch stands, for a progress display. Counts files and input bytes; never names one."""

    done: int
    total: int
    bytes_done: int
    refused: int
    elapsed_s: float

    @property
    def mb_per_s(self) -> float | None:
        """Input megabytes (10**6 bytes) per second so far; None before there is anything to divide."""
        if self.elapsed_s <= 0 or self.done == 0:
            return None
        return self.bytes_done / self.elapsed_s / 1e6


@dataclass
class BatchReport:
    """Every file of a batch with its outcome, in the order the inputs were given. Holds no patient data
    beyond the site's own input paths (see the module docstring)."""

    results: list[FileResult]
    started: str  # UTC, ISO 8601
    finished: str
    options: list[str]
    elapsed_s: float = 0.0
    quarantine_dir: Path | None = None
    stopped: str | None = None  # why the batch stopped early (the output could not be written), if it did
    not_done: list[Path] = field(default_factory=list)  # inputs never tried because the batch stopped

    @property
    def accepted(self) -> int:
        return sum(r.status == "accepted" for r in self.results)

    @property
    def refused(self) -> int:
        return sum(r.status == "refused" for r in self.results)

    @property
    def bytes_in(self) -> int:
        return sum(r.bytes_in for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "finished": self.finished,
            "elapsed_s": round(self.elapsed_s, 3),
            "options": list(self.options),
            "total": len(self.results) + len(self.not_done),
            "accepted": self.accepted,
            "refused": self.refused,
            "bytes_in": self.bytes_in,
            "quarantine_dir": str(self.quarantine_dir) if self.quarantine_dir else None,
            "stopped": self.stopped,
            "not_done": [str(path) for path in self.not_done],
            "files": [r.to_dict() for r in self.results],
        }


def collect_inputs(inputs: Iterable[Path]) -> list[Path]:
    """The files to de-identify: files as given, directories walked recursively, each in sorted order.

    Only regular files are collected from a directory. Symbolic links are not followed out of the
    tree: a link inside a directory is taken only if it leads to a file inside that same directory
    (and then once, as its target), and linked directories are not entered, so a link can never pull
    in files from elsewhere on the scanner. A file named explicitly is taken even when it is a link:
    the user chose it. An input that does not exist is kept in the list, so that the batch refuses it
    with a reason instead of losing it. A file reached twice is taken once.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path, identity: Path) -> None:
        if identity not in seen:
            seen.add(identity)
            found.append(path)

    for given in inputs:
        if not given.is_dir():
            add(given, _identity(given))
            continue
        root = given.resolve()
        walked = sorted(Path(directory) / name  # sorted by path parts: a/z before b/1 before top
                        for directory, _, files in os.walk(given)  # os.walk does not enter linked directories
                        for name in files)
        for path in walked:
            target = path.resolve()
            if path.is_symlink() and not target.is_relative_to(root):
                continue
            if target.is_file():
                add(path, target)
    return found


def _identity(path: Path) -> Path:
    try:
        return path.resolve(strict=True)
    except OSError:
        return path.absolute()  # missing: still listed once, and refused later


def default_quarantine_dir(out_dir: Path) -> Path:
    """`<OUT>.quarantine`, next to the output folder and never inside it: the output folder is what leaves
    the device, and the quarantine records name the refused input files, whose names can carry patient names."""
    out = out_dir.resolve()
    return out.parent / f"{out.name}.quarantine"


def run_batch(inputs: list[Path], out_dir: Path, *, options: frozenset[Option], key_file: Path, jobs: int = 1,
              quarantine_dir: Path | None = None, progress: Callable[[Progress], None] | None = None,
              pixel_rules: tuple[PixelRule, ...] = (), safe_private: tuple[SafePrivate, ...] = ()) -> BatchReport:
    """De-identify `inputs` (see `collect_inputs`) into `out_dir`; each refusal is recorded in the quarantine.
    `pixel_rules` (from `pixels.load_rules`) clean the images they match and admit them despite burned-in text;
    `safe_private` extends the standard's safe private attributes (kept under Retain Safe Private).

    Raises KeyFileError when the key file cannot be read or created, or lies inside `out_dir` (it
    would leave with the data and undo every pseudonym), and ValueError for `jobs` < 1 or a quarantine
    inside `out_dir`. It raises
    nothing for a bad input file. When the output cannot be written (disk full, no permission), which
    every following file would meet as well, the batch stops: the report's `stopped` says why and
    `not_done` lists the files never tried. `progress` is called in this process, once before the
    first file and after every file.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    out_dir = out_dir.resolve()
    if key_file.resolve().is_relative_to(out_dir):
        raise KeyFileError(f"the pseudonym key file {key_file} lies inside the output folder {out_dir}, which "
                           "is meant to leave the device; with the key, anyone could link the pseudonyms back to "
                           "patients. Keep the key outside the output folder.")
    # Created (or checked) here, once, before any worker starts: see the module docstring.
    profile = Profile(Pseudonymizer.from_key_file(key_file, create=True), options, pixel_rules=pixel_rules,
                      safe_private=safe_private_list(safe_private))
    quarantine = quarantine_dir if quarantine_dir is not None else default_quarantine_dir(out_dir)
    if quarantine.resolve().is_relative_to(out_dir):
        raise ValueError(f"the quarantine {quarantine} lies inside the output folder {out_dir}, which is meant to "
                         "leave the device; its records name the refused input files. Keep it outside.")
    out_dir.mkdir(parents=True, exist_ok=True)

    started = _utc_now()
    batch = _Batch(len(inputs), progress)
    work: deque[tuple[int, Path]] = deque()
    for index, path in enumerate(inputs):
        reason = _not_a_file(path)
        if reason:
            batch.record(index, _refused(path, reason))
        else:
            work.append((index, path))
    if jobs == 1:
        while work and batch.stopped is None:
            index, path = work.popleft()
            try:
                batch.record(index, _deidentify_one(path, out_dir, profile, quarantine))
            except OSError as exc:
                batch.stop(exc)
                work.appendleft((index, path))
    else:
        _run_pool(work, out_dir, profile, quarantine, jobs, batch)
    # Each output was on disk before it got its name; one fsync per folder now makes the names durable
    # (rather than one per file: see deidentify_file's `sync_folders`).
    try:
        fsync_folders(folder for result in batch.results if result is not None and result.output is not None
                      for folder in output_folders(out_dir, result.output))
    except OSError as exc:
        batch.stop(exc)
    return BatchReport(results=[r for r in batch.results if r is not None], started=started, finished=_utc_now(),
                       options=sorted(o.value for o in options), elapsed_s=batch.elapsed_s(),
                       quarantine_dir=quarantine, stopped=batch.stopped, not_done=[path for _, path in sorted(work)])


class _Batch:
    """The results so far, in input order, and the counts the progress display shows."""

    def __init__(self, total: int, progress: Callable[[Progress], None] | None) -> None:
        self.results: list[FileResult | None] = [None] * total
        self.progress = progress
        self.clock = time.monotonic()
        self.done = self.bytes_done = self.refused = 0
        self.stopped: str | None = None
        self.report_progress()

    def elapsed_s(self) -> float:
        return time.monotonic() - self.clock

    def record(self, index: int, result: FileResult) -> None:
        self.results[index] = result
        self.done += 1
        self.bytes_done += result.bytes_in
        self.refused += result.status == "refused"
        self.report_progress()

    def stop(self, exc: OSError) -> None:
        """The output side failed (`deidentify_file` raises OSError only for that): no file after this can succeed.

        The message keeps the file name pydicom or the OS gave: an output path (named by new UIDs) or the
        site's own input path, both of which the report already holds.
        """
        if self.stopped is None:
            where = f" ({exc.filename})" if exc.filename else ""
            self.stopped = f"cannot write the output: {exc.strerror or type(exc).__name__}{where}"

    def report_progress(self) -> None:
        if self.progress is not None:
            self.progress(Progress(done=self.done, total=len(self.results), bytes_done=self.bytes_done,
                                   refused=self.refused, elapsed_s=self.elapsed_s()))


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as a file at all, before a worker tries (a FIFO would block it forever)."""
    if not path.exists():
        return "no such file (or a broken symbolic link)"
    if not path.is_file():
        return "not a regular file (a device, FIFO or socket)"
    return None


def _refused(path: Path, reason: str, bytes_in: int = 0) -> FileResult:
    return FileResult(source=path, status="refused", output=None, reason=reason, bytes_in=bytes_in, report={},
                      quarantined=None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _deidentify_one(path: Path, out_dir: Path, profile: Profile, quarantine: Path) -> FileResult:
    """`deidentify_file`, with anything it raises turned into a refusal of this one file.

    The reason names the exception's class and the line it came from, never its message: a message
    may quote a value from the file, and reasons go to stderr and the report.
    """
    try:
        return deidentify_file(path, out_dir, profile, quarantine_dir=quarantine, sync_folders=False)
    except OSError:
        raise  # the output side failed: the batch stops (see run_batch)
    except Exception as exc:  # one file's bug must not stop the batch; it is reported, not hidden
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        return _refused(path, f"internal error: {type(exc).__name__}{where}; the file was not written. "
                              "Please report this to ServiceGate support", _size(path))


# ---- the process pool ---------------------------------------------------------------------------------

# Per worker process: set once by the pool's initializer, read by every task in that process. This is
# the one place a module holds state, and only inside worker processes, never in the caller's.
_worker_profile: Profile | None = None


def _init_worker(profile: Profile) -> None:
    global _worker_profile
    _worker_profile = profile


def _work(paths: list[Path], out_dir: Path, quarantine: Path) -> tuple[list[FileResult], OSError | None]:
    """De-identify `paths` in order; stop at the first output error and return it with the results so far."""
    if _worker_profile is None:  # the initializer always runs first; this keeps mypy and a misuse honest
        raise RuntimeError("the worker has no profile: _init_worker did not run")
    results = []
    for path in paths:
        try:
            results.append(_deidentify_one(path, out_dir, _worker_profile, quarantine))
        except OSError as exc:
            return results, exc
    return results, None


def _pool_context() -> multiprocessing.context.BaseContext:
    """"fork" when this process runs no other thread (the `servicegate anonymize` command): the workers start
    at once, with pydicom already imported. Forking a process that runs threads (the agent daemon) can
    deadlock a child on a lock another thread held, so then forkserver, which starts workers from a clean
    single-threaded server; spawn where neither exists. (ProcessPoolExecutor forks all its workers before it
    starts a thread of its own when the method is fork.)"""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _run_pool(pending: deque[tuple[int, Path]], out_dir: Path, profile: Profile,
              quarantine: Path, jobs: int, batch: _Batch) -> None:
    """Run `pending` in a pool of `jobs` workers; what is left in `pending` afterwards was never tried."""
    while pending and batch.stopped is None:
        suspects = _run_until_broken(pending, out_dir, profile, quarantine, jobs, batch)
        for position, (index, path) in enumerate(suspects):  # one at a time, each alone in a fresh pool
            if batch.stopped is not None:
                pending.extendleft(reversed(suspects[position:]))
                break
            alone = deque([(index, path)])
            if _run_until_broken(alone, out_dir, profile, quarantine, 1, batch):
                batch.record(index, _refused(path, "internal error: the worker process stopped while "
                                                   "de-identifying this file (a crash, or out of memory); the file "
                                                   "was not written. Please report this to ServiceGate support",
                                             _size(path)))
            pending.extend(alone)  # still there only when the batch stopped on it


def _run_until_broken(pending: deque[tuple[int, Path]], out_dir: Path, profile: Profile,
                      quarantine: Path, jobs: int, batch: _Batch) -> list[tuple[int, Path]]:
    """Run files from `pending` until it is empty, the batch stops, or the pool breaks; return the files
    lost in a break. After a stop, the files in flight are finished and the rest stay in `pending`."""
    in_flight: dict[Future[tuple[list[FileResult], OSError | None]], list[tuple[int, Path]]] = {}
    lost: list[tuple[int, Path]] = []
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=_pool_context(), initializer=_init_worker,
                                   initargs=(profile,))
    try:
        while in_flight or (pending and batch.stopped is None):
            size = max(1, min(MAX_FILES_PER_TASK, len(pending) // (jobs * IN_FLIGHT_PER_JOB * 2)))
            while pending and batch.stopped is None and len(in_flight) < jobs * IN_FLIGHT_PER_JOB:
                task = [pending.popleft() for _ in range(min(size, len(pending)))]
                in_flight[executor.submit(_work, [path for _, path in task], out_dir, quarantine)] = task
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                task = in_flight.pop(future)
                try:
                    results, error = future.result()
                except BrokenProcessPool:
                    lost.extend(task)
                    continue
                except Exception as exc:  # the results did not come back (say, they would not unpickle)
                    for index, path in task:
                        batch.record(index, _refused(path, f"internal error: {type(exc).__name__} while returning "
                                                           "the result; the file may not have been written. Please "
                                                           "report this to ServiceGate support", _size(path)))
                    continue
                for (index, _), result in zip(task, results, strict=False):
                    batch.record(index, result)
                if error is not None:
                    batch.stop(error)
                    pending.extendleft(reversed(task[len(results):]))
            if lost:
                for task in in_flight.values():
                    lost.extend(task)
                return sorted(lost)
        return []
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
