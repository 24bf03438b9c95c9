"""Where an installation puts things: one place for every path, below a root (`/`, or a staging root with --root).

    /opt/servicegate/releases/VERSION/    one virtual environment per version (the program)
    /opt/servicegate/current              symlink to the release that runs, switched atomically
    /usr/local/bin/servicegate            symlink to current/bin/servicegate, for site IT's shell (and
    /usr/local/bin/servicegate-install    to current/bin/servicegate-install)
    /etc/servicegate/agent.toml           the configuration, from the site file
    /etc/servicegate/install.json         what the installer created (users, groups, memberships) and did, for
                                          rollback and uninstall --purge
    /var/lib/servicegate/                 state: keys, sessions, outbox, audit log (0700, the service user)
    /run/servicegate/                     the control socket (made at boot by the tmpfiles entry)
    /etc/systemd/system/servicegate.service, servicegate-upgrade.path, servicegate-upgrade.service (the software
    updates the agent hands over), /etc/tmpfiles.d/servicegate.conf, /etc/xdg/autostart/servicegate-ui.desktop

The units in installer/units/ name these paths literally; tests/test_installer.py checks that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.config import Config, defaults, load
from agent.errors import ConfigError

SERVICE_USER = "servicegate"  # the agent's system user and its primary group; named literally in the unit
UNIT_NAME = "servicegate.service"
# The file protocol with the agent (agent/builtin_tasks.py install-software, agent/updates.py): in the update folder.
UPGRADE_REQUEST, UPGRADE_RESULT = "upgrade-request.json", "upgrade-result.json"
UPGRADE_CANCEL = "upgrade-cancel.json"  # the agent's kill switch: stop the handed-over upgrade before its switch
UPGRADE_PATH_UNIT = "servicegate-upgrade.path"  # starts servicegate-upgrade.service when the agent hands over an update
# The files of installer/units/ and where each goes (relative to the root).
UNIT_FILES = {
    "servicegate.service": "etc/systemd/system/servicegate.service",
    "servicegate-upgrade.path": "etc/systemd/system/servicegate-upgrade.path",
    "servicegate-upgrade.service": "etc/systemd/system/servicegate-upgrade.service",
    "servicegate.conf": "etc/tmpfiles.d/servicegate.conf",
    "servicegate-ui.desktop": "etc/xdg/autostart/servicegate-ui.desktop",
}


@dataclass(frozen=True)
class Layout:
    root: Path = Path("/")

    def at(self, absolute: str) -> Path:
        """An absolute path of the installed system, below this root."""
        return self.root / absolute.lstrip("/")

    @property
    def opt(self) -> Path:
        return self.at("/opt/servicegate")

    @property
    def releases(self) -> Path:
        return self.opt / "releases"

    def release(self, version: str) -> Path:
        return self.releases / version

    @property
    def current(self) -> Path:
        return self.opt / "current"

    @property
    def record(self) -> Path:
        return self.etc / "install.json"

    @property
    def bin_link(self) -> Path:
        return self.at("/usr/local/bin/servicegate")

    @property
    def install_link(self) -> Path:
        """`servicegate-install` of the running release, for site IT's doctor, rollback and uninstall."""
        return self.at("/usr/local/bin/servicegate-install")

    @property
    def etc(self) -> Path:
        return self.at("/etc/servicegate")

    @property
    def agent_toml(self) -> Path:
        return self.etc / "agent.toml"

    @property
    def state_dir(self) -> Path:
        return self.at("/var/lib/servicegate")

    @property
    def run_dir(self) -> Path:
        return self.at("/run/servicegate")

    @property
    def update_dir(self) -> Path:
        """The agent's update folder: the bundles it verified, its request to the upgrade service, the result."""
        return self.state_dir / "updates"

    def unit_file(self, name: str) -> Path:
        return self.at(UNIT_FILES[name])

    def program(self, release: Path | None = None) -> Path:
        """The `servicegate` command of a release (default: of `current`)."""
        return (release or self.current) / "bin" / "servicegate"


def site_config(layout: Layout) -> Config:
    """The installed configuration; the defaults when it is gone or broken (uninstall must still work; doctor's
    "configuration valid" line says what is wrong with it)."""
    try:
        return load(layout.agent_toml)
    except ConfigError:
        return defaults()
