"""The peers ServiceGate's anonymizer is measured against, each in the benchmark's own venv, run as a subprocess.

`ensure_env()` creates `.bench-venv/` once (cached by a stamp holding the pins below) with the peers from PyPI:

- dicognito (`dicognito.anonymizer.Anonymizer().anonymize(ds)`, then `ds.save_as(<new SOP UID>.dcm,
  enforce_file_format=True)`: exactly what its CLI does for each file with its default options);
- deid (pydicom/deid: `deid.dicom.get_identifiers` + `replace_identifiers(..., deid=DeidRecipe(), ids=...,
  save=True)`; `DeidRecipe()` without a file is deid's default "deid.dicom" recipe, and the other arguments
  keep their defaults, so private tags are kept, as deid does by default);
- dicom-anonymizer (KitwareMedical, `dicomanonymizer.anonymize_dicom_file(in, out, {}, delete_private_tags=True)`:
  the per-file step of `dicomanonymizer.anonymize(in_dir, out_dir, {}, delete_private_tags=True)`).

and `pydicom`: a bare `dcmread` + `dcmwrite` round trip, the floor any pydicom-based tool stands on.

Each runs through one small runner script (`write_runner`) in that venv, one file at a time inside a single
process (the tool is imported and set up once), so a crash on one file fails that file only, as a tool's own
batch loop would not: dicognito's CLI and dicom-anonymizer's `anonymize` abort the whole run on the first
exception. The runner writes a manifest: for every input, the output it wrote or the error it raised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = ROOT / ".bench-venv"

# `pip index versions NAME` on 2026-11-28 gave these as the newest; pinned so that every run compares the same code.
PEER_PINS = {"dicognito": "0.19.0", "deid": "0.4.13", "dicom-anonymizer": "2.1.0"}
PEERS = ("dicognito", "deid", "dicom-anonymizer")
BASELINE = "pydicom"  # the bare read + write round trip, run by the same runner
_STAMP = ENV_DIR / ".peers-installed"

RUNNER = r'''
"""De-identify every file under IN_DIR into OUT_DIR with one tool; write a JSON manifest of what happened."""
import json, os, sys, time, traceback
from pathlib import Path

tool, in_dir, out_dir, manifest = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
out_dir.mkdir(parents=True, exist_ok=True)
inputs = sorted(p for p in in_dir.rglob("*") if p.is_file())

if tool == "dicognito":
    import pydicom
    from dicognito.anonymizer import Anonymizer
    anonymizer = Anonymizer()  # the CLI's defaults: no prefix/suffix, a random seed for the run

    def one(src):
        with pydicom.dcmread(src, force=False) as ds:  # as dicognito.__main__ reads
            anonymizer.anonymize(ds)
            out = out_dir / (ds.SOPInstanceUID + ".dcm")  # filters.SaveToSOPInstanceUID
            ds.save_as(out, enforce_file_format=True)
        return out
elif tool == "deid":
    os.environ.setdefault("MESSAGELEVEL", "-1")
    from deid.config import DeidRecipe
    from deid.dicom import get_identifiers, replace_identifiers
    recipe = DeidRecipe()  # no file: deid's default "deid.dicom" recipe

    def one(src):
        items = get_identifiers([str(src)])
        replace_identifiers(dicom_files=[str(src)], deid=recipe, ids=items, save=True, output_folder=str(out_dir),
                            overwrite=True)
        return out_dir / src.name  # deid.dicom.utils.save_dicom keeps the input's base name
elif tool == "dicom-anonymizer":
    from dicomanonymizer import anonymize_dicom_file

    def one(src):
        out = out_dir / src.name  # dicomanonymizer.anonymize(dir, dir, ...) keeps the input's name
        anonymize_dicom_file(str(src), str(out), {}, delete_private_tags=True)
        return out
elif tool == "pydicom":
    import pydicom

    def one(src):
        ds = pydicom.dcmread(src)
        out = out_dir / src.name
        ds.save_as(out)
        return out
else:
    sys.exit(f"unknown tool {tool}")

records = []
start = time.perf_counter()
for src in inputs:
    try:
        records.append({"input": str(src), "output": str(one(src)), "error": None})
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        records.append({"input": str(src), "output": None,
                        "error": f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}: {exc}"[:300]})
manifest.write_text(json.dumps({"tool": tool, "elapsed_s": time.perf_counter() - start, "files": records}))
'''


def python() -> Path:
    return ENV_DIR / "bin" / "python"


def ensure_env(log: bool = True) -> dict[str, str]:
    """Create `.bench-venv` with the pinned peers unless it is already there; return the installed versions."""
    wanted = json.dumps(PEER_PINS, sort_keys=True)
    if not (_STAMP.exists() and _STAMP.read_text() == wanted and python().exists()):
        if log:
            print(f"bench: creating {ENV_DIR.name} with {', '.join(f'{k}=={v}' for k, v in PEER_PINS.items())}",
                  file=sys.stderr)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", str(ENV_DIR)], check=True)
        subprocess.run([str(python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *(f"{name}=={version}" for name, version in PEER_PINS.items())], check=True)
        _STAMP.write_text(wanted)
    return versions()


def versions() -> dict[str, str]:
    """The versions actually installed in the peers' venv (the peers, and the pydicom and numpy they run on)."""
    code = ("import json, importlib.metadata as m; print(json.dumps({n: m.version(n) for n in "
            "('dicognito', 'deid', 'dicom-anonymizer', 'pydicom', 'numpy')}))")
    out = subprocess.run([str(python()), "-c", code], check=True, capture_output=True, text=True).stdout
    found: dict[str, str] = json.loads(out)
    found["python"] = subprocess.run([str(python()), "-c", "import platform; print(platform.python_version())"],
                                     check=True, capture_output=True, text=True).stdout.strip()
    return found


def write_runner(bench_dir: Path) -> Path:
    path = bench_dir / "peer_runner.py"
    path.write_text(RUNNER)
    return path


def command(runner: Path, tool: str, in_dir: Path, out_dir: Path, manifest: Path) -> list[str]:
    """The command line that runs `tool` (a peer or "pydicom") over `in_dir` in the peers' venv."""
    return [str(python()), str(runner), tool, str(in_dir), str(out_dir), str(manifest)]


def read_manifest(manifest: Path) -> list[dict[str, str | None]]:
    files: list[dict[str, str | None]] = json.loads(manifest.read_text())["files"]
    return files
