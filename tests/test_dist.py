"""`make dist` (scripts/dist.py): the offline bundle has everything, installs without an index, holds no portal, and
two builds of one commit are the same bytes. The bundles come from tests/bundle_fixtures.py (one wheelhouse per
session, one build per version)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.bundle_fixtures import CURRENT_VERSION, DIST, ROOT, UPGRADE_VERSION, BundleFactory, build_tarball


def load_dist() -> ModuleType:
    spec = importlib.util.spec_from_file_location("servicegate_dist", DIST)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dist = load_dist()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned(requirements: Path) -> dict[str, tuple[str, set[str]]]:
    """requirements.txt: canonical name -> (version, sha256 digests)."""
    result: dict[str, tuple[str, set[str]]] = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"(\S+)==(\S+)((?: --hash=sha256:[0-9a-f]{64})+)", line)
            assert match is not None, f"requirements.txt line not `name==version --hash=sha256:...`: {line!r}"
            result[canonicalize_name(match[1])] = (match[2], set(re.findall(r"[0-9a-f]{64}", match[3])))
    return result


def wheels(bundle: Path) -> dict[str, tuple[str, Path]]:
    """wheels/: canonical name -> (version, file)."""
    result = {}
    for path in sorted((bundle / "wheels").glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(path.name)
        assert name not in result, f"two wheels of {name} in wheels/"
        result[str(name)] = (str(version), path)
    return result


def servicegate_wheel(bundle: Path) -> Path:
    name: str = json.loads((bundle / "bundle.json").read_text())["wheel"]
    return bundle / "wheels" / name


# --- what is inside -----------------------------------------------------------------------------------------------


def test_the_bundle_has_every_file(bundle: Path) -> None:
    assert bundle.name == f"servicegate-{CURRENT_VERSION}"
    for name in ("servicegate-install", "bundle.json", "requirements.txt", "sbom.cdx.json", "site.example.toml"):
        assert (bundle / name).is_file(), name
    assert os.access(bundle / "servicegate-install", os.X_OK)
    manifest = json.loads((bundle / "bundle.json").read_text())
    commit_time = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True,
                                 text=True, check=True).stdout
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", commit_time))
    assert manifest == {"name": "servicegate", "version": CURRENT_VERSION, "python": "3.11",
                        "platform": "linux-x86_64", "wheel": f"servicegate-{CURRENT_VERSION}-py3-none-any.whl",
                        "source_date_epoch": epoch}
    assert servicegate_wheel(bundle).is_file()
    units = sorted(p for p in (ROOT / "installer" / "units").iterdir() if p.is_file() and not p.name.startswith("."))
    assert units, "installer/units/ is empty"
    assert sorted(p.name for p in (bundle / "units").iterdir()) == [p.name for p in units]
    for unit in units:
        assert (bundle / "units" / unit.name).read_bytes() == unit.read_bytes()
    assert (bundle / "site.example.toml").read_bytes() == (ROOT / "installer" / "site.example.toml").read_bytes()


def test_the_launcher_runs_the_installer_from_the_wheel(bundle: Path, tmp_path: Path) -> None:
    text = (bundle / "servicegate-install").read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f'PYTHONPATH="$here/wheels/{servicegate_wheel(bundle).name}" exec "$python" -m installer --bundle "$here"' \
        in text
    assert "python=/usr/bin/python3\n" in text  # the system's interpreter first, not one in root's PATH
    # The installer and agent.config import from the wheel alone: the standard library, no site-packages (-S).
    probe = subprocess.run([sys.executable, "-S", "-c", "import installer, agent.config; print(installer.__file__)"],
                           env={"PYTHONPATH": str(servicegate_wheel(bundle)), "PATH": os.environ["PATH"]},
                           cwd=tmp_path, capture_output=True, text=True, check=False)  # not the checkout's packages
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(servicegate_wheel(bundle)) + "/installer/")
    shown = subprocess.run([str(bundle / "servicegate-install"), "--help"], capture_output=True, text=True,
                           check=False, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "usage:" in shown.stdout


def test_every_wheel_matches_its_hash_in_requirements_txt(bundle: Path) -> None:
    requirements, present = pinned(bundle / "requirements.txt"), wheels(bundle)
    assert set(requirements) == set(present)
    for name, (version, path) in present.items():
        assert requirements[name][0] == version, name
        assert requirements[name][1] == {sha256(path)}, f"{path.name} does not match requirements.txt"
    locked = {entry.name: entry for entry in dist.parse_lock(ROOT / "requirements" / "device.txt")}
    assert set(locked) == set(present) - {"servicegate"}
    for name, entry in locked.items():  # each dependency is the locked version, and a file the lock allows
        assert present[name][0] == entry.version
        assert sha256(present[name][1]) in entry.hashes, name


def test_the_servicegate_wheel_has_no_portal(bundle: Path) -> None:
    with zipfile.ZipFile(servicegate_wheel(bundle)) as wheel:
        names = wheel.namelist()
        info = f"servicegate-{CURRENT_VERSION}.dist-info"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert not [n for n in names if n.startswith("portal/")]
    assert {n.split("/")[0] for n in names} == {"agent", "anonymizer", "consent_ui", "installer", "telemetry", info}
    assert "servicegate = agent.cli:main" in entry_points
    assert "servicegate-install = installer.cli:main" in entry_points
    assert "portal" not in entry_points
    assert re.findall(r"^Provides-Extra: (.*)$", metadata, flags=re.MULTILINE) == ["ui"]
    assert "installer/site.example.toml" in names
    assert any(n.startswith("installer/units/") for n in names)


# --- reproducible ---------------------------------------------------------------------------------------------------


def test_two_builds_of_one_commit_are_the_same_bytes(bundle: Path, bundle_factory: BundleFactory,
                                                      tmp_path: Path) -> None:
    tarball, digest, _ = build_tarball(CURRENT_VERSION, tmp_path / "again", bundle_factory.wheelhouse)
    again = tmp_path / "again" / f"servicegate-{CURRENT_VERSION}"  # dist.py leaves the unpacked bundle beside it
    assert digest == sha256(tarball)
    assert (again / "sbom.cdx.json").read_bytes() == (bundle / "sbom.cdx.json").read_bytes()
    assert sha256(servicegate_wheel(again)) == sha256(servicegate_wheel(bundle))
    assert digest == sha256(bundle_factory.tarball(CURRENT_VERSION))


def test_the_tarball_is_normalised(bundle: Path, bundle_factory: BundleFactory) -> None:
    tarball = bundle_factory.tarball(CURRENT_VERSION)
    epoch = json.loads((bundle / "bundle.json").read_text())["source_date_epoch"]
    header = tarball.read_bytes()[:10]
    assert header[3] & 0x08 == 0, "the gzip header names a file"
    assert int.from_bytes(header[4:8], "little") == epoch
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[0] == bundle.name
    assert all(n == bundle.name or n.startswith(bundle.name + "/") for n in names)
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (epoch, 0, 0, "", ""), member.name
        executable = member.isdir() or member.name.endswith("/servicegate-install")
        assert member.mode == (0o755 if executable else 0o644), member.name


def test_the_sbom_lists_every_wheel(bundle: Path) -> None:
    sbom = json.loads((bundle / "sbom.cdx.json").read_text())
    present = wheels(bundle)
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["specVersion"] == "1.6"
    assert sbom["serialNumber"].startswith("urn:uuid:")
    epoch = json.loads((bundle / "bundle.json").read_text())["source_date_epoch"]
    assert datetime.fromisoformat(sbom["metadata"]["timestamp"]) == datetime.fromtimestamp(epoch, UTC)
    assert "cyclonedx-py" in {tool["name"] for tool in sbom["metadata"]["tools"]["components"]}
    root = sbom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("servicegate", CURRENT_VERSION)
    assert root["hashes"] == [{"alg": "SHA-256", "content": sha256(servicegate_wheel(bundle))}]
    components = {canonicalize_name(c["name"]): c for c in sbom["components"]}
    assert set(components) == set(present) - {"servicegate"}
    for name, component in components.items():
        version, path = present[name]
        assert component["version"] == version, name
        assert component["purl"] == f"pkg:pypi/{name}@{version}"
        assert component["hashes"] == [{"alg": "SHA-256", "content": sha256(path)}], name


def test_a_second_version_builds_only_the_servicegate_wheel(bundle: Path, bundle_factory: BundleFactory) -> None:
    upgrade = bundle_factory(UPGRADE_VERSION)
    assert "downloading" not in bundle_factory.log(UPGRADE_VERSION)
    assert json.loads((upgrade / "bundle.json").read_text())["version"] == UPGRADE_VERSION
    with zipfile.ZipFile(servicegate_wheel(upgrade)) as wheel:
        assert f'__version__ = "{UPGRADE_VERSION}"' in wheel.read("agent/__init__.py").decode()
        assert f"\nVersion: {UPGRADE_VERSION}\n" in wheel.read(f"servicegate-{UPGRADE_VERSION}.dist-info/METADATA")\
            .decode()
    old, new = pinned(bundle / "requirements.txt"), pinned(upgrade / "requirements.txt")
    assert new.pop("servicegate")[0] == UPGRADE_VERSION
    old.pop("servicegate")
    assert new == old  # the same dependency wheels, byte for byte
    sbom = json.loads((upgrade / "sbom.cdx.json").read_text())
    assert sbom["metadata"]["component"]["version"] == UPGRADE_VERSION


# --- it installs offline --------------------------------------------------------------------------------------------


def test_the_bundle_installs_offline_into_a_fresh_venv(bundle: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # and every command runs in tmp_path: `python -c` would import the checkout's packages
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--require-hashes",
                                "--find-links", "wheels", "-r", "requirements.txt"],
                               cwd=bundle, env=env, capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shown = subprocess.run([str(venv / "bin" / "servicegate"), "--version"], capture_output=True, text=True,
                           check=False, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert CURRENT_VERSION in shown.stdout
    portal = subprocess.run([str(venv / "bin" / "python"), "-c", "import portal"], capture_output=True, text=True,
                            check=False, cwd=tmp_path)
    assert portal.returncode == 1
    assert "No module named 'portal'" in portal.stderr
    assert not (venv / "bin" / "servicegate-portal").exists()
    assert not (venv / "bin" / "servicegate-sim-modality").exists()
    qt = subprocess.run([str(venv / "bin" / "python"), "-c", "import PySide6.QtWidgets, cryptography, pydicom"],
                        capture_output=True, text=True, check=False, cwd=tmp_path)
    assert qt.returncode == 0, qt.stderr


# --- what dist.py refuses -------------------------------------------------------------------------------------------


def test_the_device_pyproject_drops_the_portal() -> None:
    text = dist.device_pyproject((ROOT / "pyproject.toml").read_text(), "9.8.7")
    data = tomllib.loads(text)
    assert data["project"]["version"] == "9.8.7"
    assert "portal" not in data["tool"]["setuptools"]["packages"]
    assert "installer" in data["tool"]["setuptools"]["packages"]
    assert set(data["project"]["scripts"]) == {"servicegate", "servicegate-install"}
    assert set(data["project"]["optional-dependencies"]) == {"ui"}
    assert data["tool"]["mypy"]["packages"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"][
        "packages"]  # the same list elsewhere is left alone


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('servicegate-portal = "portal.cli:main"\n', "", "servicegate-portal"),
    (', "portal"]\n\n[tool.setuptools.package-data]', "]\n\n[tool.setuptools.package-data]", "[tool.setuptools]"),
    ('version = "', 'version= "', "version"),
])
def test_an_unexpected_pyproject_stops_the_build(old: str, new: str, expected: str) -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert old in text
    with pytest.raises(dist.DistError, match=re.escape(expected)):
        dist.device_pyproject(text.replace(old, new, 1), "1.0.0")


def test_a_bad_version_or_lock_is_refused_with_a_message(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(DIST), "--version", "not-a-version", "--out", str(tmp_path / "out"),
                           "--wheelhouse", str(tmp_path / "wh")], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "is not a Python package version" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "wh").exists()  # refused before any download
    lock = tmp_path / "device.txt"
    lock.write_text("requests>=2\n")
    with pytest.raises(dist.DistError, match="name==version --hash=sha256"):
        dist.parse_lock(lock)

