"""Session fixtures for the offline bundle (scripts/dist.py), loaded as a plugin by tests/conftest.py.

- `wheelhouse`: the locked dependency wheels and the build backend, downloaded once per test session
  (`scripts/dist.py --fetch-only`) into a session folder.
- `bundle_factory`: `bundle_factory(version)` builds the bundle of that version with the shared wheelhouse (so it
  downloads nothing and builds only the servicegate wheel), unpacks its tarball as site IT would, and returns the
  unpacked `servicegate-VERSION/` folder; each version is built once per session. `bundle_factory.tarball(version)`
  and `bundle_factory.log(version)` give the tarball and what dist.py said while building it.
  `bundle_factory.broken(version)` is a copy of that bundle whose `servicegate run` exits at start (made by the
  test, not by dist.py): for the upgrade that must roll back.
- `bundle`: `bundle_factory(CURRENT_VERSION)`, the bundle of the checked-out sources.

UPGRADE_VERSION is the version upgrade tests build their second bundle with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "scripts" / "dist.py"
CURRENT_VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
UPGRADE_VERSION = "{}.{}.0".format(CURRENT_VERSION.split(".")[0], int(CURRENT_VERSION.split(".")[1]) + 1)
# `servicegate run` calls agent.daemon.run (agent/cli.py); appended to agent/daemon.py, this `run` replaces it.
BROKEN_RUN = '''

def run(config: Config) -> int:  # appended by tests/bundle_fixtures.py (BundleFactory.broken)
    sys.stderr.write(f"ServiceGate {__version__}: broken on purpose by the test: `run` exits at start\\n")
    return int(ExitCode.FAILED)
'''


def run_dist(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """scripts/dist.py with this interpreter; a failure fails the test with what dist.py said."""
    proc = subprocess.run([sys.executable, str(DIST), *args], capture_output=True, text=True, check=False,
                          env=env if env is not None else dict(os.environ), timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"scripts/dist.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}",
                    pytrace=False)
    return proc


def build_tarball(version: str, out: Path, wheelhouse: Path) -> tuple[Path, str, str]:
    """Build one bundle into `out`: (the tarball, its sha256 as dist.py printed it, dist.py's stderr)."""
    proc = run_dist("--version", version, "--out", str(out), "--wheelhouse", str(wheelhouse))
    digest, _, path = proc.stdout.strip().partition("  ")
    tarball = Path(path)
    assert tarball == out.resolve() / f"servicegate-{version}-linux-x86_64.tar.gz", proc.stdout
    return tarball, digest, proc.stderr


class BundleFactory:
    """Builds each version's bundle once, with the session's wheelhouse, and unpacks its tarball."""

    def __init__(self, folder: Path, wheelhouse: Path) -> None:
        self._folder = folder
        self.wheelhouse = wheelhouse
        self._tarballs: dict[str, Path] = {}
        self._logs: dict[str, str] = {}

    def __call__(self, version: str) -> Path:
        unpacked = self._folder / version / "unpacked"
        if version not in self._tarballs:
            tarball, _, log = build_tarball(version, self._folder / version / "out", self.wheelhouse)
            with tarfile.open(tarball) as tar:
                tar.extractall(unpacked, filter="data")
            self._tarballs[version], self._logs[version] = tarball, log
        return unpacked / f"servicegate-{version}"

    def broken(self, version: str) -> Path:
        """A ServiceGate `version` whose run exits at start, made by the test: a copy of the real bundle with
        agent.daemon.run replaced in the servicegate wheel. It installs and answers `--version` like the real one
        (the upgrade's check before the switch passes); `servicegate run` prints a message and exits 1 before it
        tells systemd it is ready. The wheel's RECORD line and its sha256 in requirements.txt (which the installer
        checks) and in sbom.cdx.json are updated; the SBOM's serial number is not derived again."""
        broken = self._folder / version / "broken" / f"servicegate-{version}"
        if not broken.exists():
            shutil.copytree(self(version), broken)
            wheel = broken / "wheels" / json.loads((broken / "bundle.json").read_text(encoding="utf-8"))["wheel"]
            before = hashlib.sha256(wheel.read_bytes()).hexdigest()
            _append_to_wheel(wheel, "agent/daemon.py", BROKEN_RUN.encode())
            after = hashlib.sha256(wheel.read_bytes()).hexdigest()
            for name in ("requirements.txt", "sbom.cdx.json"):
                text = (broken / name).read_text(encoding="utf-8")
                assert before in text, f"{name} does not name the servicegate wheel's sha256"
                (broken / name).write_text(text.replace(before, after), encoding="utf-8")
        return broken

    def tarball(self, version: str) -> Path:
        self(version)
        return self._tarballs[version]

    def log(self, version: str) -> str:
        self(version)
        return self._logs[version]


def _append_to_wheel(wheel: Path, member: str, addition: bytes) -> None:
    """Rewrite `wheel` with `addition` at the end of `member`, its RECORD line (sha256, size) to match; every other
    entry as it was (name, time, mode, compression)."""
    with zipfile.ZipFile(wheel) as old:
        entries = [(info, old.read(info)) for info in old.infolist()]
    contents = {info.filename: content for info, content in entries}
    data = contents[member] + addition
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record = next(name for name in contents if name.endswith(".dist-info/RECORD"))
    lines = [f"{member},sha256={digest},{len(data)}" if line.startswith(f"{member},") else line
             for line in contents[record].decode().splitlines()]
    changed = {member: data, record: ("\n".join(lines) + "\n").encode()}
    with zipfile.ZipFile(wheel, "w") as new:
        for info, content in entries:
            new.writestr(info, changed.get(info.filename, content))


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    run_dist("--fetch-only", "--wheelhouse", str(folder))
    return folder


@pytest.fixture(scope="session")
def bundle_factory(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> BundleFactory:
    return BundleFactory(tmp_path_factory.mktemp("bundles"), wheelhouse)


@pytest.fixture(scope="session")
def bundle(bundle_factory: BundleFactory) -> Path:
    return bundle_factory(CURRENT_VERSION)
