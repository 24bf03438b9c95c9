"""The offline bundle the installer installs from (built by `make dist`, scripts/dist.py).

    servicegate-VERSION/
      servicegate-install     the launcher: this package, imported from the servicegate wheel by the system python3
      bundle.json             name, version, python, platform, the servicegate wheel's file name
      requirements.txt        every wheel pinned with its sha256 (pip --require-hashes)
      wheels/                 servicegate and every dependency
      units/, site.example.toml, sbom.cdx.json
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError

_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Bundle:
    directory: Path
    version: str
    python: str  # "3.11": the wheels' CPython
    wheel: str  # the servicegate wheel's file name

    @classmethod
    def open(cls, directory: Path) -> Bundle:
        """Read bundle.json. Raises ConfigError (exit 2) saying what is wrong with the bundle."""
        manifest = directory / "bundle.json"
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            bundle = cls(directory, str(data["version"]), str(data["python"]), str(data["wheel"]))
        except FileNotFoundError:
            raise ConfigError(f"{directory} is not a ServiceGate bundle (no bundle.json): unpack "
                              "servicegate-VERSION-linux-x86_64.tar.gz and run its servicegate-install.") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{manifest} cannot be read ({exc}): the bundle is damaged; copy it again from the "
                              "vendor's release.") from None
        if not bundle.requirements.is_file() or not bundle.wheels.is_dir():
            raise ConfigError(f"{directory}: requirements.txt or wheels/ is missing: the bundle is damaged; copy "
                              "it again from the vendor's release.")
        return bundle

    @property
    def requirements(self) -> Path:
        return self.directory / "requirements.txt"

    @property
    def wheels(self) -> Path:
        return self.directory / "wheels"

    def wheel_files(self) -> list[Path]:
        return sorted(self.wheels.glob("*.whl"))

    def size(self) -> int:
        """Bytes of all wheels."""
        return sum(path.stat().st_size for path in self.wheel_files())

    def pinned(self) -> dict[str, set[str]]:
        """requirements.txt: each requirement (`name==version`) -> the sha256 digests it allows."""
        text = self.requirements.read_text(encoding="utf-8").replace("\\\n", " ")
        return {line.split()[0]: set(_HASH.findall(line)) for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "-"))}

    def damaged_wheels(self) -> list[str]:
        """Each wheel whose sha256 no requirement allows, and each requirement without its wheel."""
        pinned = self.pinned()
        allowed = set().union(*pinned.values()) if pinned else set()
        problems, found = [], set()
        for path in self.wheel_files():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found.add(digest)
            if digest not in allowed:
                problems.append(f"wheels/{path.name} does not match its hash in requirements.txt")
        problems += [f"no wheel in wheels/ for {name}" for name, digests in pinned.items() if not digests & found]
        return problems
