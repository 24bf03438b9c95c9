"""One run of a service task, and the work around it that happens off the agent's event loop.

A run is requested by the engineer (through the portal), decided by agent.policy, started by
agent.runner, and finished when its process is gone. What it wrote is handled by what each file
is, before anything leaves (the seed: no patient data leaves un-de-identified):

- its stdout and stderr, and text files: every line through the log scrubber (telemetry.scrubber);
- DICOM files: de-identified with verification by the anonymizer and queued for upload
  (agent.upload); files it refuses stay in the upload quarantine; the raw files are deleted;
- anything else: kept in `<state_dir>/tasks/<id>/quarantine` until the technologist releases it at
  the console, after the data-privacy disclaimer;
- a run that was stopped (kill switch, revoked, timeout) sends no files at all: its text and other
  files are quarantined, its DICOM files deleted.

A run stopped early runs its kind's restore command once (whoever stops it first claims it: the
kill switch, or the run's own end).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.clock import parse_utc, utc_iso
from agent.runner import Finished, run_helper
from agent.tasks import TaskKind, build_argv
from telemetry.scrubber import Scrubber

RESTORE_TIMEOUT_S = 60
TEXT_FILE_CAP = 256 * 1024  # bytes of each text file sent; the rest is counted as dropped
RELEASABLE = "quarantined until the technologist releases it"
ENDED = frozenset({"completed", "failed", "timeout", "stopped", "declined", "refused"})


@dataclass(frozen=True)
class TaskRun:
    id: str
    kind: str
    title: str
    session_id: str
    engineer_id: str
    params: Mapping[str, str]
    state: str  # waiting (for the technologist) | running | completed | failed | timeout | stopped | declined
    created_at: datetime
    ended_at: datetime | None = None
    stop_reason: str = ""  # why it was stopped: killed, revoked, session_ended, timeout, stopped by whom
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    dropped: int = 0
    files: tuple[Mapping[str, Any], ...] = ()  # name, size, sha256, handling (sent, uploaded, quarantined, ...)
    restore: str = ""  # "", "ran", "failed: why"
    blocks: bool = False  # needs FULL, started in a FULL session: examinations stay blocked until it ended (restored)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "session_id": self.session_id,
                "engineer_id": self.engineer_id, "params": dict(self.params), "state": self.state,
                "created_at": utc_iso(self.created_at), "ended_at": utc_iso(self.ended_at) if self.ended_at else None,
                "stop_reason": self.stop_reason, "returncode": self.returncode, "stdout": self.stdout,
                "stderr": self.stderr, "dropped": self.dropped, "files": [dict(f) for f in self.files],
                "restore": self.restore, "blocks": self.blocks}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskRun:
        return cls(id=data["id"], kind=data["kind"], title=data["title"], session_id=data["session_id"],
                   engineer_id=data["engineer_id"], params=dict(data["params"]), state=data["state"],
                   created_at=parse_utc(data["created_at"]),
                   ended_at=parse_utc(data["ended_at"]) if data.get("ended_at") else None,
                   stop_reason=data.get("stop_reason", ""), returncode=data.get("returncode"),
                   stdout=data.get("stdout", ""), stderr=data.get("stderr", ""), dropped=int(data.get("dropped", 0)),
                   files=tuple(data.get("files", ())), restore=data.get("restore", ""),
                   blocks=bool(data.get("blocks", False)))

    def audit_details(self) -> dict[str, Any]:
        """What the audit log keeps of a run: never its output (that is in the outbox record)."""
        return {"task_id": self.id, "kind": self.kind, "session_id": self.session_id,
                "engineer_id": self.engineer_id, "params": dict(self.params), "state": self.state,
                "stop_reason": self.stop_reason, "returncode": self.returncode,
                "files": [{k: f[k] for k in ("name", "size", "sha256", "handling") if k in f} for f in self.files],
                "restore": self.restore}


@dataclass
class Workspace:
    """`<state_dir>/tasks/<id>/`: the run's output folder, its quarantine, its home and temp folder."""

    root: Path

    @classmethod
    def of(cls, state_dir: Path, task_id: str) -> Workspace:
        return cls(state_dir / "tasks" / task_id)

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def create(self) -> None:
        for folder in (self.root, self.output, self.root / "tmp"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def environment(workspace: Workspace, run: TaskRun, *, log_files: Sequence[str],
                allowed_dirs: Sequence[str], pattern_dir: Path, update_dir: Path,
                config_dir: Path) -> dict[str, str]:
    """A task's whole environment: nothing of the agent's own is passed on."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workspace.root),
            "TMPDIR": str(workspace.root / "tmp"), "SERVICEGATE_TASK_ID": run.id,
            "SERVICEGATE_SESSION_ID": run.session_id, "SERVICEGATE_LOG_FILES": os.pathsep.join(log_files),
            "SERVICEGATE_ALLOWED_DIRS": os.pathsep.join(allowed_dirs), "SERVICEGATE_PATTERN_DIR": str(pattern_dir),
            "SERVICEGATE_UPDATE_DIR": str(update_dir), "SERVICEGATE_CONFIG_DIR": str(config_dir)}


class Restores:
    """Runs each stopped run's restore command once, whoever asks first (the kill switch, or the run's own end); a
    second caller waits for the first and gets the same result."""

    def __init__(self, modality: Sequence[str]) -> None:
        self.modality = tuple(modality)
        self._results: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def run(self, task: TaskKind, task_id: str, output: Path) -> str:
        """"" when the kind has none; else "ran" or "failed: why"."""
        if not task.restore:
            return ""
        with self._lock:
            lock = self._locks.setdefault(task_id, threading.Lock())
        with lock:
            if task_id not in self._results:
                self._results[task_id] = self._call(task, output)
            return self._results[task_id]

    def _call(self, task: TaskKind, output: Path) -> str:
        try:
            argv = build_argv(task.restore, {}, modality=self.modality, output=output)
            returncode, text = run_helper(argv, RESTORE_TIMEOUT_S, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        except subprocess.TimeoutExpired:
            return f"failed: no answer within {RESTORE_TIMEOUT_S} s"
        except Exception as exc:  # noqa: BLE001 - a restore that cannot run is recorded, never raised
            return f"failed: {exc}"
        if returncode != 0:
            lines = text.strip().splitlines()
            return f"failed: exit {returncode}" + (f" ({lines[-1][:200]})" if lines else "")
        return "ran"


@dataclass
class OutputHandler:
    """What leaves of a finished run (see the module docstring). `upload(paths, session_id)` de-identifies and
    queues DICOM files and returns agent.upload's report as a dict."""

    scrubber: Scrubber
    upload: Callable[[list[Path], str], dict[str, Any]]

    def handle(self, run: TaskRun, finished: Finished, workspace: Workspace) -> TaskRun:
        stdout = self._scrub(finished.stdout.decode("utf-8", "replace"))
        stderr = self._scrub(finished.stderr.decode("utf-8", "replace"))
        files = sorted(p for p in workspace.output.rglob("*") if p.is_file() and not p.is_symlink())
        by_kind: dict[str, list[Path]] = {"dicom": [], "text": [], "other": []}
        for path in files:
            by_kind[classify(path)].append(path)
        if finished.outcome in ("completed", "failed"):
            handled = self._dicom(by_kind["dicom"], run.session_id)
            handled += [self._text_file(path, workspace) for path in by_kind["text"]]
            handled += _quarantine(by_kind["other"], workspace, RELEASABLE)
        else:  # a run that did not finish sends nothing; raw DICOM that will never be sent is not kept either
            handled = [{"name": str(p.relative_to(workspace.output)), "size": p.stat().st_size, "sha256": "",
                        "handling": "deleted: the task did not finish"} for p in by_kind["dicom"]]
            handled += _quarantine(by_kind["text"] + by_kind["other"], workspace,
                                   "quarantined: the task did not finish")
        shutil.rmtree(workspace.output, ignore_errors=True)  # what is left is raw DICOM: sent de-identified, or not
        return replace(run, stdout=stdout, stderr=stderr, dropped=finished.dropped, returncode=finished.returncode,
                       files=tuple(handled))

    def _dicom(self, files: list[Path], session_id: str) -> list[dict[str, Any]]:
        """De-identified (verified) and queued for upload; what the anonymizer refuses stays in its quarantine."""
        if not files:
            return []
        report = self.upload(files, session_id)
        queued = [{"name": e["name"], "size": e["size"], "sha256": e["sha256"],
                   "handling": "de-identified, queued for upload"} for e in report["entries"]]
        refused = [{"name": f"refused file {number}", "size": 0, "sha256": "",
                    "handling": f"refused by the anonymizer, kept in the upload quarantine: {r['reason']}"}
                   for number, r in enumerate(report["refusals"], 1)]
        return queued + refused

    def _text_file(self, path: Path, workspace: Workspace) -> dict[str, Any]:
        """Its last TEXT_FILE_CAP bytes (a log's newest lines), scrubbed."""
        raw = path.read_bytes()
        text = self._scrub(raw[-TEXT_FILE_CAP:].decode("utf-8", "replace"))
        data = text.encode()
        return {"name": str(path.relative_to(workspace.output)), "size": len(raw),
                "sha256": hashlib.sha256(data).hexdigest(), "handling": "scrubbed, sent",
                "dropped": max(0, len(raw) - TEXT_FILE_CAP), "text": text}

    def _scrub(self, text: str) -> str:
        lines = [self.scrubber.scrub(line) for line in text.splitlines()]
        return "\n".join(lines)


def classify(path: Path) -> str:
    """What a file a task wrote is: "dicom" (a DICOM file: "DICM" after its 128-byte preamble), "text" (its start is
    UTF-8 without NUL), or "other"."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if b"\0" in head:
        return "other"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 4096)
    except UnicodeDecodeError:
        return "other"
    return "text"


def _quarantine(files: list[Path], workspace: Workspace, handling: str) -> list[dict[str, Any]]:
    """Move `files` out of the output folder into the run's quarantine (mode 0700): nothing in it leaves."""
    handled = []
    workspace.quarantine.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in files:
        name = str(path.relative_to(workspace.output))
        target = workspace.quarantine / name
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(path, target)
        handled.append({"name": name, "size": target.stat().st_size, "sha256": _sha256(target),
                        "handling": handling})
    return handled


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
