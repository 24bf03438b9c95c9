"""`make dist`: the offline, reproducible install bundle dist/servicegate-VERSION-linux-x86_64.tar.gz.

    python scripts/dist.py [--version V] [--out DIR] [--wheelhouse DIR] [--fetch-only]

It prints one line, `<sha256>  <tarball>` (the format `sha256sum -c` reads). Next to the tarball it leaves the
unpacked bundle, OUT/servicegate-VERSION/, the same files (removed and made again on every build).

    servicegate-VERSION/
      servicegate-install   sh launcher: the installer (pure stdlib + agent.config), imported from the wheel
      bundle.json           name, version, python, platform, the servicegate wheel's file name, source_date_epoch
      requirements.txt      every wheel in wheels/ pinned with its sha256: pip install --no-index --require-hashes
      wheels/               the servicegate wheel (no `portal`) and the wheel of every locked dependency
      units/                installer/units/*: the systemd units and the consent UI's autostart entry
      site.example.toml     installer/site.example.toml
      sbom.cdx.json         CycloneDX 1.6 JSON of the wheels (cyclonedx-py), servicegate as the metadata component

Reproducible: two builds of one commit give the same bytes, tarball included.
- The dependencies are requirements/device.txt, pinned with hashes by pip-compile (`make lock`); they are downloaded
  as the wheels for CPython 3.11 on manylinux_2_34 x86_64 (PySide6 6.12 needs glibc 2.34), with --require-hashes.
- The servicegate wheel is built by setuptools from a staged copy of the sources (the pyproject rewritten: no
  `portal` package, no portal console scripts, no extras but `ui`), with SOURCE_DATE_EPOCH (default: the commit's
  time) for the timestamps in the zip and the file modes normalised. The build backend is not whatever the venv
  has: it is requirements/build.txt (pinned, hashed), in a small venv of its own kept in the wheelhouse, so
  setuptools plug-ins installed in the dev venv cannot change the wheel.
- The SBOM is made by `cyclonedx-py requirements --output-reproducible` (timestamp = SOURCE_DATE_EPOCH); then
  cyclonedx-python-lib adds the servicegate wheel's SHA-256 to the metadata component, copies each wheel's SHA-256
  from its distribution reference to the component, and gives the BOM a serial number derived from its content.
- The tarball: entries sorted, mtime SOURCE_DATE_EPOCH, owner 0:0 without names, modes 0755/0644, gzip header
  without a name and with mtime SOURCE_DATE_EPOCH.

The wheelhouse (--wheelhouse, default build/wheelhouse) keeps the downloaded wheels and the build backend's venv;
a build whose locked wheels are all there with their hashes downloads nothing, so a second bundle (another
--version, for upgrade tests) only builds the servicegate wheel again.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import uuid
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
DEVICE_LOCK = ROOT / "requirements" / "device.txt"
BUILD_LOCK = ROOT / "requirements" / "build.txt"
NAME = "servicegate"
PYTHON = (3, 11)
PLATFORM = "linux-x86_64"
GLIBC_MINOR = 34  # manylinux_2_34: the newest the locked wheels need (PySide6-Essentials 6.12)
KEPT_EXTRAS = {"ui"}  # the device's extras; portal, test and dev are not the device's business
PORTAL_SCRIPTS = ("servicegate-portal", "servicegate-sim-modality")  # the simulator must not reach a scanner
SBOM_NAMESPACE = uuid.UUID("6f1f0d1e-5c1a-4a53-9a0e-8d6c2f7b9e41")  # serial numbers: uuid5 of the BOM's content


class DistError(Exception):
    """What went wrong, for the person running `make dist`, with what to do."""


@dataclass(frozen=True)
class Locked:
    """One requirement of a lock file: `name==version --hash=sha256:... ...`."""

    name: str  # canonical
    version: str
    hashes: frozenset[str]


@dataclass(frozen=True)
class Wheel:
    name: str  # canonical
    version: str
    path: Path
    sha256: str


# --- inputs -------------------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(argv: list[str], *, what: str, env: dict[str, str] | None = None) -> str:
    """Run a command; its output is shown only when it fails."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise DistError(f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n{tail}")
    return proc.stdout


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH from the environment, else the time of the checked-out commit."""
    given = os.environ.get("SOURCE_DATE_EPOCH")
    if given is None:
        try:
            given = run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], what="git log").strip()
        except (DistError, OSError) as exc:
            raise DistError(f"no commit time ({exc}): build in a git checkout or set SOURCE_DATE_EPOCH") from None
    if not given.isdigit() or int(given) < 315532800:  # zip files cannot hold times before 1980
        raise DistError(f"SOURCE_DATE_EPOCH={given!r} is not a Unix time after 1980")
    return int(given)


def parse_lock(path: Path) -> list[Locked]:
    """The requirements of a pip-compile --generate-hashes file (comments dropped, continuation lines joined)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DistError(f"cannot read the lock file {path} ({exc}): run `make lock`") from None
    logical, current = [], ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current = (current + line).strip()
        if current:
            logical.append(current)
        current = ""
    entries = []
    for line in logical:
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        if match is None:
            raise DistError(f"{path}: cannot read {line[:100]!r}: every line must be `name==version "
                            "--hash=sha256:...` as `make lock` (pip-compile --generate-hashes) writes them")
        hashes = frozenset(re.findall(r"sha256:([0-9a-f]{64})", match[3]))
        entries.append(Locked(canonicalize_name(match[1]), match[2], hashes))
    if not entries:
        raise DistError(f"{path} pins nothing: run `make lock`")
    return entries


# --- the servicegate wheel ----------------------------------------------------------------------------------------


def _replace_once(text: str, pattern: str, replacement: str, where: str, expected: str) -> str:
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    if count != 1:
        raise DistError(f"{where}: expected {expected}, not found; scripts/dist.py must learn the new layout")
    return new


def device_pyproject(text: str, version: str) -> str:
    """pyproject.toml for the device's wheel: no portal package, no portal scripts, only the `ui` extra, `version`."""
    where = "pyproject.toml"
    text = _replace_once(text, r'^version = "[^"]*"$', f'version = "{version}"', where, 'version = "..." in [project]')
    match = re.search(r'^\[tool\.setuptools\]\npackages = \[([^\]]*)\]$', text, flags=re.MULTILINE)
    if match is None or '"portal"' not in match[1]:
        raise DistError(f'{where}: expected [tool.setuptools] packages = [..., "portal"], not found; scripts/dist.py '
                        "must learn the new layout")
    packages = [name for name in re.findall(r'"([^"]+)"', match[1]) if name != "portal"]
    listed = ", ".join(f'"{name}"' for name in packages)
    text = text[:match.start(1)] + listed + text[match.end(1):]
    for script in PORTAL_SCRIPTS:
        text = _replace_once(text, rf'^{re.escape(script)} = "portal\.[^"]*"\n', "", where,
                             f'{script} = "portal...." in [project.scripts]')
    for extra in sorted(set(tomllib.loads(text)["project"].get("optional-dependencies", {})) - KEPT_EXTRAS):
        text = _replace_once(text, rf'^{re.escape(extra)} = \[(?:[^\[\]"]|"[^"]*")*\]\n', "", where,
                             f"the extra {extra} = [...] in [project.optional-dependencies]")
    data = tomllib.loads(text)  # what setuptools will read: check it says what the device needs
    scripts = data["project"].get("scripts", {})
    if "portal" in data["tool"]["setuptools"]["packages"] or any(v.startswith("portal") for v in scripts.values()):
        raise DistError(f"{where}: the portal is still in the device's wheel after the rewrite")
    if data["project"]["version"] != version:
        raise DistError(f"{where}: the version is {data['project']['version']}, not {version}, after the rewrite")
    return text


def stage_sources(stage: Path, version: str | None) -> tuple[Path, str]:
    """Copy what the wheel is built from into `stage`, rewritten for the device. Returns (the tree, the version)."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = tomllib.loads(pyproject)["project"]
    init = (ROOT / "agent" / "__init__.py").read_text(encoding="utf-8")
    declared = re.search(r'^__version__ = "([^"]*)"$', init, flags=re.MULTILINE)
    if declared is None or declared[1] != project["version"]:
        raise DistError(f"agent/__init__.py's __version__ ({declared[1] if declared else 'none'}) is not "
                        f"pyproject.toml's version ({project['version']}): make them the same")
    version = version or project["version"]
    try:
        if str(Version(version)) != version:
            raise DistError(f"--version {version}: write it as {Version(version)} (the normalised form)")
    except InvalidVersion:
        raise DistError(f"--version {version!r} is not a Python package version (PEP 440), e.g. 0.2.0") from None
    tree = stage / "src"
    tree.mkdir()
    text = device_pyproject(pyproject, version)
    (tree / "pyproject.toml").write_text(text, encoding="utf-8")
    shutil.copy2(ROOT / project["readme"], tree / project["readme"])
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in tomllib.loads(text)["tool"]["setuptools"]["packages"]:
        shutil.copytree(ROOT / package, tree / package, ignore=ignore)
    (tree / "agent" / "__init__.py").write_text(init.replace(declared[0], f'__version__ = "{version}"'), "utf-8")
    # The zip stores each file's mode: the same modes whatever the checkout's umask.
    for path in [tree, *tree.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return tree, version


def build_env(wheelhouse: Path) -> Path:
    """A venv with exactly requirements/build.txt (setuptools, wheel), kept in the wheelhouse. Returns its python."""
    key = sha256_file(BUILD_LOCK)[:12]
    env = wheelhouse / f".build-env-{key}"
    python = env / "bin" / "python"
    if (env / ".complete").exists() and python.exists():  # a venv whose base python went away is made again
        return python
    parse_lock(BUILD_LOCK)  # a clear message for a damaged lock
    shutil.rmtree(env, ignore_errors=True)
    run([sys.executable, "-m", "venv", "--without-pip", str(env)], what="making the build backend's venv")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--require-hashes", "--no-deps",
         "--only-binary", ":all:", "-r", str(BUILD_LOCK)], what="installing requirements/build.txt")
    (env / ".complete").touch()
    return python


def build_servicegate_wheel(tree: Path, out: Path, epoch: int, python: Path) -> Wheel:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="servicegate-wheel-") as built:
        run([sys.executable, "-m", "pip", "--python", str(python), "wheel", "--quiet", "--no-deps",
             "--no-build-isolation", "--no-index", "--wheel-dir", built, str(tree)],
            what="building the servicegate wheel", env=env)
        wheels = list(Path(built).glob("*.whl"))
        if len(wheels) != 1:
            raise DistError(f"building the servicegate wheel gave {[w.name for w in wheels]}, not one wheel")
        path = out / wheels[0].name
        shutil.move(wheels[0], path)
    name, version, _, _ = parse_wheel_filename(path.name)
    check_device_wheel(path)
    return Wheel(str(name), str(version), path, sha256_file(path))


def check_device_wheel(path: Path) -> None:
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        entry_points = next((wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), "")
    if any(n.startswith("portal/") for n in names) or "portal." in entry_points:
        raise DistError(f"{path.name} contains the reference portal: it must never reach a scanner")


# --- the dependency wheels ----------------------------------------------------------------------------------------


def target_platforms() -> list[str]:
    """manylinux_2_34 down to manylinux1 with the legacy aliases, in the order pip prefers them (newest first)."""
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    platforms = []
    for minor in range(GLIBC_MINOR, 4, -1):
        platforms.append(f"manylinux_2_{minor}_x86_64")
        if minor in legacy:
            platforms.append(f"{legacy[minor]}_x86_64")
    return platforms


def target_tags() -> list[Tag]:
    """The tags of CPython 3.11 on those platforms, most preferred first (what pip download chooses by)."""
    abi = f"cp{PYTHON[0]}{PYTHON[1]}"
    platforms = target_platforms()
    return [*cpython_tags(PYTHON, abis=[abi], platforms=platforms), *compatible_tags(PYTHON, abi, platforms)]


def select_wheels(lock: list[Locked], wheelhouse: Path) -> tuple[list[Wheel], list[Locked]]:
    """For each locked requirement the best wheel in the wheelhouse with a locked hash; and the ones without."""
    priority = {tag: rank for rank, tag in enumerate(target_tags())}
    by_name: dict[str, list[Path]] = {}
    for path in sorted(wheelhouse.glob("*.whl")):
        by_name.setdefault(canonicalize_name(parse_wheel_filename(path.name)[0]), []).append(path)
    found, missing = [], []
    for entry in lock:
        candidates = []
        for path in by_name.get(entry.name, []):
            _, version, _, tags = parse_wheel_filename(path.name)
            ranks = [priority[tag] for tag in tags if tag in priority]
            if version == Version(entry.version) and ranks:
                candidates.append((min(ranks), path.name, path))
        for _, _, path in sorted(candidates):
            digest = sha256_file(path)
            if digest in entry.hashes:
                found.append(Wheel(entry.name, entry.version, path, digest))
                break
        else:
            missing.append(entry)
    return found, missing


def fetch_dependency_wheels(wheelhouse: Path) -> list[Wheel]:
    lock = parse_lock(DEVICE_LOCK)
    found, missing = select_wheels(lock, wheelhouse)
    if not missing:
        return found
    print(f"dist: downloading {len(missing)} of {len(lock)} locked wheels into {wheelhouse}", file=sys.stderr)
    platforms = [arg for platform in target_platforms() for arg in ("--platform", platform)]
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:", "--require-hashes",
         "--python-version", f"{PYTHON[0]}.{PYTHON[1]}", "--implementation", "cp", "--abi",
         f"cp{PYTHON[0]}{PYTHON[1]}", *platforms, "--dest", str(wheelhouse), "-r", str(DEVICE_LOCK)],
        what="downloading the locked wheels")
    found, missing = select_wheels(lock, wheelhouse)
    if missing:
        raise DistError("no wheel for CPython 3.11 on manylinux_2_34 x86_64 with a locked hash for: "
                        + ", ".join(f"{m.name}=={m.version}" for m in missing))
    return found


# --- the bundle ---------------------------------------------------------------------------------------------------


LAUNCHER = """#!/bin/sh
# ServiceGate {version}: the installer, run by the system's python3 straight from the servicegate wheel (zipimport).
# The system's python3 first: each release is a virtual environment on the interpreter that ran the installer, and
# one in a user's PATH (pyenv under /root, say) would give a release the service user cannot run.
here=$(dirname "$(readlink -f "$0")")
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3) || {{ echo "servicegate-install: no python3" >&2; exit 1; }}
PYTHONPATH="$here/wheels/{wheel}" exec "$python" -m installer --bundle "$here" "$@"
"""


def write_requirements(path: Path, wheels: list[Wheel]) -> None:
    lines = [f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in sorted(wheels, key=lambda w: w.name)]
    header = ("# Every wheel in wheels/, pinned with its sha256. The installer runs:\n"
              "#   pip install --no-index --require-hashes --find-links wheels -r requirements.txt\n")
    path.write_text(header + "".join(lines), encoding="utf-8")


# A requirements file has no dependency graph, and cyclonedx-python-lib warns that the root has no dependencies.
# Listing every wheel as the root's direct dependency would be false; the graph is left out, as cyclonedx-py does.
_NO_GRAPH = ".*has no defined dependencies.*"


def write_sbom(path: Path, dependencies: list[Wheel], servicegate: Wheel, pyproject: Path, epoch: int,
               scratch: Path) -> None:
    """cyclonedx-py on the dependencies' requirements; then, with cyclonedx-python-lib, the hashes and the serial.
    cyclonedx-py's own validation is skipped (2 s); the lib validates the final document against the schema."""
    try:
        from cyclonedx.model import HashAlgorithm, HashType
        from cyclonedx.model.bom import Bom
        from cyclonedx.output.json import JsonV1Dot6
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
    except ImportError:
        raise DistError("cyclonedx-bom is not installed: pip install -e '.[dev]' (make dist does it)") from None
    inputs = scratch / "sbom-requirements.txt"
    write_requirements(inputs, dependencies)
    made = scratch / "sbom-cyclonedx-py.json"
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), PYTHONWARNINGS="ignore")  # see _NO_GRAPH
    run([sys.executable, "-m", "cyclonedx_py", "requirements", str(inputs), "--pyproject", str(pyproject),
         "--output-reproducible", "--no-validate", "--spec-version", "1.6", "--output-format", "JSON",
         "--output-file", str(made)],
        what="making the SBOM (cyclonedx-py)", env=env)
    data = json.loads(made.read_text(encoding="utf-8"))
    bom = Bom.from_json(data)  # type: ignore[attr-defined]  # from py-serializable's class decorator
    sha256 = HashAlgorithm.SHA_256
    if bom.metadata.component is None or bom.metadata.component.name != NAME:
        raise DistError(f"cyclonedx-py made an SBOM whose metadata component is not {NAME}")
    bom.metadata.component.hashes.add(HashType(alg=sha256, content=servicegate.sha256))
    for component in bom.components:  # the wheel's hash, from "implicit dist url", onto the component itself
        for reference in component.external_references:
            component.hashes.update(h for h in reference.hashes if h.alg == sha256)
    canonical = json.dumps(data, sort_keys=True) + servicegate.sha256
    bom.serial_number = uuid.uuid5(SBOM_NAMESPACE, canonical)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NO_GRAPH)
        text = JsonV1Dot6(bom).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise DistError(f"the SBOM is not valid CycloneDX 1.6: {error}")
    path.write_text(text + "\n", encoding="utf-8")


def make_tarball(tree: Path, tarball: Path, epoch: int) -> None:
    """tree (the bundle's top directory) as a byte-for-byte reproducible .tar.gz."""
    paths = [tree, *sorted(tree.rglob("*"), key=lambda p: p.relative_to(tree).as_posix())]
    partial = tarball.with_name(tarball.name + ".partial")
    # Level 6: the wheels are compressed already; 9 takes longer for the same size.
    with partial.open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=epoch) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            info = tar.gettarinfo(str(path), arcname=path.relative_to(tree.parent).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644
            if info.isfile():
                with path.open("rb") as stream:
                    tar.addfile(info, stream)
            else:
                tar.addfile(info)
    partial.replace(tarball)


def installer_files(source: Path) -> tuple[list[Path], Path]:
    """The units (installer/units/*) and installer/site.example.toml of the staged sources: what the wheel has."""
    units = sorted(p for p in (source / "installer" / "units").glob("*") if p.is_file() and not p.name.startswith("."))
    if not units:
        raise DistError("installer/units/ holds no files: the bundle needs the systemd units and the UI's autostart "
                        "entry")
    site = source / "installer" / "site.example.toml"
    if not site.is_file():
        raise DistError("installer/site.example.toml is missing: the bundle ships it as the site file's example")
    return units, site


def build(version: str | None, out: Path, wheelhouse: Path) -> Path:
    epoch = source_date_epoch()
    with tempfile.TemporaryDirectory(prefix="servicegate-dist-") as scratch_name:
        scratch = Path(scratch_name)
        source, version = stage_sources(scratch, version)  # first: a wrong --version or layout stops at once
        units, site = installer_files(source)
        wheelhouse.mkdir(parents=True, exist_ok=True)
        dependencies = fetch_dependency_wheels(wheelhouse)
        python = build_env(wheelhouse)
        tree = out / f"{NAME}-{version}"
        shutil.rmtree(tree, ignore_errors=True)
        (tree / "wheels").mkdir(parents=True)
        (tree / "units").mkdir()
        servicegate = build_servicegate_wheel(source, tree / "wheels", epoch, python)
        for wheel in dependencies:
            shutil.copyfile(wheel.path, tree / "wheels" / wheel.path.name)
        for unit in units:
            shutil.copyfile(unit, tree / "units" / unit.name)
        shutil.copyfile(site, tree / "site.example.toml")
        launcher = tree / "servicegate-install"
        launcher.write_text(LAUNCHER.format(version=version, wheel=servicegate.path.name), encoding="utf-8")
        write_requirements(tree / "requirements.txt", [*dependencies, servicegate])
        write_sbom(tree / "sbom.cdx.json", dependencies, servicegate, source / "pyproject.toml", epoch, scratch)
        manifest = {"name": NAME, "version": version, "python": f"{PYTHON[0]}.{PYTHON[1]}", "platform": PLATFORM,
                    "wheel": servicegate.path.name, "source_date_epoch": epoch}
        (tree / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for path in [tree, *tree.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path == launcher else 0o644)
    tarball = out / f"{NAME}-{version}-{PLATFORM}.tar.gz"
    make_tarball(tree, tarball, epoch)
    return tarball


def _dirty_note() -> None:
    try:
        status = run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], what="git status")
    except (DistError, OSError):
        return
    if status.strip():
        print("dist: note: the working tree has uncommitted changes; the bundle is built from the working tree, "
              "so it is not the commit's", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/dist.py", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--version", help="the bundle's version (default: pyproject.toml's), e.g. for upgrade tests")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the tarball goes (default: dist/)")
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / "build" / "wheelhouse",
                        help="downloaded wheels and the build backend, kept between builds (default: build/wheelhouse)")
    parser.add_argument("--fetch-only", action="store_true",
                        help="only fill the wheelhouse (the locked wheels, the build backend) and stop")
    args = parser.parse_args(argv)
    try:
        if args.fetch_only:
            args.wheelhouse.mkdir(parents=True, exist_ok=True)
            fetch_dependency_wheels(args.wheelhouse)
            build_env(args.wheelhouse)
            print(args.wheelhouse.resolve())
            return 0
        _dirty_note()
        tarball = build(args.version, args.out.resolve(), args.wheelhouse.resolve())
    except DistError as exc:
        print(f"dist: error: {exc}", file=sys.stderr)
        return 1
    print(f"{sha256_file(tarball)}  {tarball}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
