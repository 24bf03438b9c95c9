"""The site file: `agent.toml` as it should be on this scanner, plus an `[install]` table only the installer reads.

Everything but `[install]` is checked by the agent's own configuration loader (agent.config) and written to
/etc/servicegate/agent.toml as site IT wrote it, comments included. `[install]` is checked by the same loader
code against `InstallSettings` below. See installer/site.example.toml.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agent.config import Config, from_mapping, read_section, setting
from agent.errors import ConfigError

# The unit lets the agent write only below these (ReadWritePaths), so a site file cannot move them.
FIXED_PATHS = {"state_dir": Path("/var/lib/servicegate"), "control_socket": Path("/run/servicegate/control.sock")}


@dataclass(frozen=True)
class InstallSettings:
    """[install]: who uses ServiceGate on this scanner, and how to enroll it. Not written to agent.toml."""

    console_users: tuple[str, ...] = setting((), "The technologists' login users at the scanner console; added to "
                                                 "[control] console_group (they use the consent UI). At least one.")
    modality_users: tuple[str, ...] = setting((), "The scanner software's users; added to [control] modality_group "
                                                  "(they report scans and errors).", may_be_empty=True)
    viewer_users: tuple[str, ...] = setting((), "Users who may read state and the audit log; added to [control] "
                                                "viewer_group.", may_be_empty=True)
    min_free_mb: int = setting(1024, "Free space the state folder needs beyond the program (outbox, audit log), "
                                     "in MB.", minimum=64, maximum=1_000_000)
    portal_url: str = setting("", "The vendor portal for --enroll, https://...", may_be_empty=True)
    ca_fingerprint: str = setting("", "The SHA-256 fingerprint of the vendor's CA, for --enroll (from the vendor's "
                                      "letter, not from the network).", may_be_empty=True)
    device_id: str = setting("", "This scanner's device ID at the vendor, for --enroll.", may_be_empty=True)

    def users(self) -> dict[str, tuple[str, ...]]:
        """[install] key -> the users it lists."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.endswith("_users")}


@dataclass(frozen=True)
class Site:
    path: Path
    install: InstallSettings
    config: Config
    agent_toml: str = field(repr=False)  # the site file without [install]: what /etc/servicegate/agent.toml holds

    def groups_of(self) -> dict[str, str]:
        """[install] key of users -> the group they join."""
        control = self.config.control
        return {"console_users": control.console_group, "modality_users": control.modality_group,
                "viewer_users": control.viewer_group}


_HEADER = re.compile(r"^\s*\[\[?[^\[\],=]*\]\]?\s*(#.*)?$")
_INSTALL_HEADER = re.compile(r"^\s*\[\s*install\s*\]\s*(#.*)?$")


def load(path: Path) -> Site:
    """Read and check a site file. Raises ConfigError naming the file, the key and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: site file not found. Start from site.example.toml in the bundle.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the site file ({exc}).") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the syntax and start again.") from None
    install_table = data.pop("install", None)
    if not isinstance(install_table, dict):
        raise ConfigError(f"{path}: no [install] table. Add one with console_users = [\"...\"] (see "
                          "site.example.toml in the bundle).")
    agent_text = _without_install(text)
    try:
        same = tomllib.loads(agent_text) == data
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise ConfigError(f"{path}: write [install] as one table of its own (a line [install] and its keys), "
                          "not as dotted keys or an inline table, so it can be left out of agent.toml.")
    install = read_section(str(path), "install", InstallSettings, install_table, path.parent)
    if not install.console_users:
        raise ConfigError(f"{path}: [install] console_users is empty; name the scanner console's login users, "
                          "like console_users = [\"radiographer\"]: without them nobody can use the consent UI.")
    config = from_mapping(data, path)
    for key, fixed in FIXED_PATHS.items():
        if getattr(config.paths, key) != fixed:
            raise ConfigError(f"{path}: [paths] {key} must stay {fixed} in an installed system (the service may "
                              f"write only there); remove the key from the site file.")
    if config.paths.audit_dir != config.paths.state_dir / "audit":
        raise ConfigError(f"{path}: [paths] audit_dir must stay inside {FIXED_PATHS['state_dir']} in an installed "
                          "system (the service may write only there); remove the key from the site file.")
    return Site(path, install, config, agent_text)


def enrollment(site: Site) -> dict[str, Any]:
    """The [install] keys --enroll needs; ConfigError names the missing ones."""
    wanted = {"portal_url": site.install.portal_url, "ca_fingerprint": site.install.ca_fingerprint,
              "device_id": site.install.device_id}
    missing = [key for key, value in wanted.items() if not value]
    if missing:
        raise ConfigError(f"{site.path}: --enroll needs [install] {', '.join(missing)} (from the vendor's "
                          "enrollment letter).")
    return wanted


def _without_install(text: str) -> str:
    """The text with the [install] table's lines (header to the next table header) left out."""
    kept: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if _HEADER.match(line):
            inside = bool(_INSTALL_HEADER.match(line))
        if not inside:
            kept.append(line)
    return "".join(kept)
