"""The agent's configuration: one frozen object loaded from `agent.toml`.

The schema below is the single source of truth: the loader validates against it and
`docs/configuration.md` is generated from it (`python -m agent.config --markdown`), so the
documentation cannot drift from the code. Every path the agent touches comes from here, which
is what lets the tests and `make demo` run the whole system in a temporary directory.

Later issues add their sections as new dataclasses and a field on `Config`.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
import sys
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from agent.errors import ConfigError
from agent.protocol import hotkey_parts

DEFAULT_CONFIG_PATH = Path("/etc/servicegate/agent.toml")


def setting(default: Any, help: str, *, minimum: int | None = None, maximum: int | None = None,
            choices: tuple[str, ...] | None = None, may_be_empty: bool = False, max_bytes: int | None = None) -> Any:
    """A configuration key: its default, one line of help, and what values are allowed."""
    return field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum,
                                            "choices": choices, "may_be_empty": may_be_empty,
                                            "max_bytes": max_bytes})


# A Unix socket's path must fit in sockaddr_un.sun_path (108 bytes with the terminating NUL).
SOCKET_PATH_MAX_BYTES = 107


@dataclass(frozen=True)
class PathsConfig:
    """Where the agent keeps its files. Relative paths are taken from the configuration file's folder."""

    state_dir: Path = setting(Path("/var/lib/servicegate"),
                              "State: access grant, sessions, keys. Created 0700 if missing.")
    audit_dir: Path = setting(Path(""), "Audit log segments and checkpoints. Empty: `<state_dir>/audit`.",
                              may_be_empty=True)
    control_socket: Path = setting(Path("/run/servicegate/control.sock"),
                                   "The local control API's Unix socket (the console UI and the CLI use it).",
                                   max_bytes=SOCKET_PATH_MAX_BYTES)

    @property
    def audit_signing_key(self) -> Path:
        """The audit log's Ed25519 key (0600); its public half sits beside it as `.pub`."""
        return self.state_dir / "keys" / "audit-signing.key"

    @property
    def outbox(self) -> Path:
        """Everything bound for the service centre waits here (SQLite, 0600): see docs/telemetry.md."""
        return self.state_dir / "outbox.sqlite"

    @property
    def anonymizer_key(self) -> Path:
        """The site's secret for keyed UIDs and pseudonyms (0600): the agent and the CLI give the same ones."""
        return self.state_dir / "keys" / "anonymizer.key"


@dataclass(frozen=True)
class ControlConfig:
    """Who may do what over the control socket. Roles come from the caller's peer credentials."""

    console_group: str = setting("servicegate-console",
                                 "Members may change access, confirm and end sessions, and use the kill switch.")
    modality_group: str = setting("servicegate-modality",
                                  "Members (the scanner software) may only report scans and errors.")
    viewer_group: str = setting("servicegate-viewer", "Members may read state and the audit log.")
    request_timeout_s: int = setting(10, "A client must send a whole request line within this time.",
                                     minimum=1, maximum=300)


@dataclass(frozen=True)
class SessionsConfig:
    """Limits of a remote session."""

    idle_timeout_min: int = setting(15, "End a session after this long without an action the engineer initiates.",
                                    minimum=1, maximum=240)
    time_limit_min: int = setting(480, "End a session this long after it became active, whatever happens.",
                                  minimum=5, maximum=1440)
    consent_timeout_min: int = setting(5, "A session nobody confirmed at the console ends after this long.",
                                       minimum=1, maximum=60)
    auth_timeout_min: int = setting(5, "An engineer who has not authenticated within this long is refused.",
                                    minimum=1, maximum=60)
    max_per_engineer: int = setting(0, "Sessions one engineer (by engineer ID) may have open at once; another is "
                                       "refused until one ends. 0: no limit.", minimum=0, maximum=20)


@dataclass(frozen=True)
class AuditConfig:
    """The tamper-evident audit log."""

    retention_days: int = setting(365, "Segments younger than this are never deleted (at least one year).",
                                  minimum=365, maximum=3650)
    checkpoint_interval_min: int = setting(5, "Longest time between signed checkpoints while records arrive.",
                                           minimum=1, maximum=5)


@dataclass(frozen=True)
class DaemonConfig:
    """The `servicegate run` process."""

    shutdown_grace_s: int = setting(10, "On SIGTERM, time for a clean stop before the agent exits by force.",
                                    minimum=1, maximum=300)
    log_level: str = setting("info", "Least severe message written to the log.",
                             choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class TelemetryConfig:
    """What the device reports about itself (docs/telemetry.md)."""

    mounts: tuple[str, ...] = setting(("/",), "Mount points whose usage and I/O are reported.", may_be_empty=True)
    processes: tuple[str, ...] = setting((), "Names of the modality's processes whose health is reported (running, "
                                             "restarts, memory, CPU).", may_be_empty=True)
    outbox_cap_mb: int = setting(256, "Largest size of the outbox; above it, debug logs, then logs, then metrics are "
                                      "shed (never alerts), and each shed is reported.", minimum=16, maximum=16384)
    log_files: tuple[str, ...] = setting((), "Log files to follow and send, scrubbed (rotation by rename or "
                                             "copytruncate is followed).", may_be_empty=True)
    journal: bool = setting(False, "Follow the systemd journal too (through journalctl; the agent's user must be "
                                   "allowed to read it, e.g. in the group systemd-journal).")
    journal_units: tuple[str, ...] = setting((), "Only the journal entries of these systemd units. Empty: every "
                                                 "unit.", may_be_empty=True)
    journal_priority: str = setting("info", "Least severe journal entry sent.",
                                    choices=("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"))
    journal_directory: Path = setting(Path(""), "Read the journal files in this folder instead of the system journal "
                                                "(journalctl --directory). Empty: the system journal.",
                                      may_be_empty=True)
    max_line_kb: int = setting(16, "Longer log lines are cut (and marked) at this many kilobytes.",
                               minimum=1, maximum=1024)
    scrub_patterns: tuple[str, ...] = setting((), "The site's own regular expressions: every match is removed from "
                                                  "log lines, besides the built-in rules.", may_be_empty=True)
    collect_s: int = setting(60, "Seconds between samples (each checked against the thresholds).",
                             minimum=5, maximum=3600)
    logs_s: int = setting(60, "Seconds between reads of the log files.", minimum=5, maximum=3600)
    push_s: int = setting(300, "Seconds between pushes to the receiver (an alert is pushed at once).",
                          minimum=5, maximum=86400)
    endpoint: str = setting("", "Base URL of the OTLP/HTTP receiver (the portal, or an OpenTelemetry Collector), "
                                "https only. Empty: nothing is sent; the outbox keeps everything (up to its cap).",
                            may_be_empty=True)
    ca_file: Path = setting(Path(""), "The receiver's CA certificate (PEM): the only one trusted for it.",
                            may_be_empty=True)
    client_cert: Path = setting(Path(""), "The device's client certificate (PEM); its common name is the device id.",
                                may_be_empty=True)
    client_key: Path = setting(Path(""), "The client certificate's private key (PEM, readable only by the agent).",
                               may_be_empty=True)
    thresholds: Path = setting(Path(""), "A TOML file of threshold rules ([[rule]] tables, see docs/telemetry.md). "
                                         "Empty: the vendor's rules from its last configuration update, else the "
                                         "built-in rules. Set, the site keeps its own: configuration updates are "
                                         "refused.", may_be_empty=True)


@dataclass(frozen=True)
class PortalConfig:
    """The link to the vendor's portal (docs/protocol.md). The portal's address, its CA and the device's
    certificate come from enrollment (`servicegate enroll`), not from here. The three identity files are what the
    device certificate's hardware binding is computed from; they are settings so that a test can play another
    machine."""

    proxy_url: str = setting("", "The site's HTTP proxy, e.g. http://proxy.hospital.example:3128. Empty: connect "
                                 "directly. Proxy variables in the environment are never used.", may_be_empty=True)
    machine_id_file: Path = setting(Path("/etc/machine-id"), "The machine ID (hashed with the others, never sent).")
    product_uuid_file: Path = setting(Path("/sys/class/dmi/id/product_uuid"),
                                      "The DMI product UUID, where readable (hashed, never sent).")
    product_serial_file: Path = setting(Path("/sys/class/dmi/id/product_serial"),
                                        "The DMI serial number, where readable (hashed, never sent).")
    inbox_wait_s: int = setting(55, "How long one poll of the portal's inbox waits for a message.",
                                minimum=1, maximum=120)
    request_timeout_s: int = setting(30, "How long a call to the portal may take before it counts as failed.",
                                     minimum=1, maximum=300)


@dataclass(frozen=True)
class AnonymizerConfig:
    """DICOM de-identification before anything leaves (`servicegate anonymize`; its command-line options
    override these). The pseudonym key is `<state_dir>/keys/anonymizer.key`. Option names, the safe private
    CSV and the pixel-rule format are described in docs/deidentification.md; they are checked when the
    anonymizer first uses them, with a message naming this section."""

    options: tuple[str, ...] = setting((), "Profile options added to the Basic profile, e.g. "
                                           '["retain-safe-private", "clean-descriptors"]. Empty: Basic only.',
                                       may_be_empty=True)
    safe_private: Path = setting(Path(""), "A CSV of the site's own safe private attributes, kept under "
                                           "retain-safe-private besides the standard's list. Empty: none.",
                                 may_be_empty=True)
    pixel_rules: Path = setting(Path(""), "A TOML file of Clean Pixel Data rules (rectangles blanked per "
                                          "manufacturer, model, modality and image size). Empty: none.",
                                may_be_empty=True)
    jobs: int = setting(1, "Worker processes. 1 leaves the other cores to the scanner's own software.",
                        minimum=1, maximum=64)


@dataclass(frozen=True)
class TasksConfig:
    """Service tasks a remote engineer runs in a session (docs/tasks.md): what they are (the catalog), who may run
    which (the restrictions), and how the kill switch stops them."""

    catalog: Path = setting(Path(""), "A TOML file of [[task]] tables (docs/tasks.md). Empty: the built-in catalog.",
                            may_be_empty=True)
    restrictions: Path = setting(Path(""), "A TOML file of [[restrict]] rules: which task kinds and flags an engineer "
                                           "(by ID) or a company may use. Empty: no restriction beyond the access "
                                           "level.", may_be_empty=True)
    allowed_dirs: tuple[str, ...] = setting(("/var/log",), "Folders a task may read files from (fetch-file); a "
                                                           "path is checked after resolving symbolic links.",
                                            may_be_empty=True)
    grace_s: int = setting(5, "The kill switch's grace period: tasks get SIGTERM, and what still runs after this "
                              "long is killed.", minimum=1, maximum=60)
    output_cap_kb: int = setting(256, "Output (stdout, stderr) kept per task and stream; the rest is counted and "
                                      "dropped.", minimum=16, maximum=16384)
    max_running: int = setting(20, "Tasks that may run at once.", minimum=1, maximum=100)
    cgroups: bool = setting(True, "Run each task in a cgroup v2 of its own when the agent can create one (under "
                                  "systemd: Delegate=yes); else in its own process group.")


@dataclass(frozen=True)
class ModalityConfig:
    """The scanner's own service tool: the default task catalog's {modality} commands and the examination block
    call it (its contract is in docs/tasks.md). While a FULL session is active the agent holds the examination
    block as a lease it renews; when the agent dies the lease lapses by itself, so a crash never leaves the
    scanner blocked."""

    tool: tuple[str, ...] = setting((), "The tool as a command: an absolute program path and its arguments, no "
                                        "shell, e.g. [\"/opt/vendor/bin/modalityctl\"]. Empty: no modality tasks, and "
                                        "the examination block is only reported (status `examinations_blocked`) "
                                        "for the scanner software to read.", may_be_empty=True)
    block_lease_s: int = setting(15, "How long one renewal of the examination block holds.", minimum=3, maximum=300)
    block_renew_s: int = setting(5, "How often the agent renews the block while it is held (less than the lease).",
                                 minimum=1, maximum=100)
    hook_timeout_s: int = setting(5, "How long one call of the tool for the block may take before it counts as "
                                     "failed (and is killed).", minimum=1, maximum=60)


@dataclass(frozen=True)
class ConsoleConfig:
    """The consent UI at the scanner console (`servicegate ui`), which reads these from the agent."""

    hotkey: str = setting("Ctrl+Alt+End", "The global key that ends the session wherever the focus is (X11 only), "
                                          "like Ctrl+Alt+End: modifiers (Ctrl, Alt, Shift, Super) and an X key "
                                          "name, joined by +.")
    language: str = setting("system", "The UI's language: en, de, or system (the desktop session's locale; English "
                                      "when it is neither). Taken when the UI starts.",
                            choices=("system", "en", "de"))
    high_contrast: bool = setting(False, "Show the UI in high contrast (white and yellow on black). Taken when the UI "
                                         "starts.")


@dataclass(frozen=True)
class ScreenConfig:
    """Screen sharing for application support (docs/screen-sharing.md): the console's screen, served by x11vnc on
    loopback and relayed to the portal; view-only unless the session has full access and the technologist allows
    control in the banner."""

    display: str = setting(":0", "The console's X display that is shared, like :0. Its X server must let the "
                                 "agent's user in (docs/screen-sharing.md).")
    idle_timeout_min: int = setting(10, "Sharing ends after this long without a key or pointer event from the "
                                        "engineer (screen updates do not count).", minimum=1, maximum=240)


@dataclass(frozen=True)
class UpdatesConfig:
    """Software and virus-pattern updates from the service centre (docs/updates.md): verified with TUF against the
    vendor's root from the enrollment, and installed only after an approval at the console (or by the site policy
    below, recorded in the audit log like an approval)."""

    model: str = setting("", "This scanner's model as the vendor's update metadata names it, like \"CT-DEMO\"; an "
                             "update for another model is refused. Empty: every update is refused.", may_be_empty=True)
    virus_pattern_dir: Path = setting(Path(""), "Where virus patterns are installed: each version in a folder of its "
                                                "own, `current` pointing to the one in use. Empty: "
                                                "`<state_dir>/virus-patterns`.", may_be_empty=True)
    auto_approve_virus_patterns: str = setting("", "A daily window of local time, like \"22:00-06:00\", in which the "
                                                   "site approves virus patterns without asking (each recorded as "
                                                   "approved by `site-policy`). Empty: every update is asked for.",
                                               may_be_empty=True)


# A relay on this machine: mail to it never crosses the network, so STARTTLS may be left out.
LOCAL_RELAYS = ("127.0.0.1", "localhost", "::1")
# What `[notify]` takes as an e-mail address: one "@" with text on both sides, nothing that would make a header
# list out of it (spaces, commas, angle brackets, quotes, semicolons).
_WINDOW = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")
_DISPLAY = re.compile(r":[0-9]{1,4}(\.[0-9]{1,2})?")  # a local X display: the console's
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


@dataclass(frozen=True)
class NotifyConfig:
    """E-mail notices of remote sessions (optional). On every connection and disconnection of a remote service
    engineer, the staff below get one message through the site's SMTP relay: who, which company, level, why,
    when, and at the end the end reason and the engineer's summary. No patient data. A notice the relay does not
    take is kept and sent again later; sending never holds up a session."""

    smtp_host: str = setting("", "The site's SMTP relay, e.g. smtp.hospital.example. Empty: no notices.",
                             may_be_empty=True)
    smtp_port: int = setting(587, "The relay's port (587: submission with STARTTLS).", minimum=1, maximum=65535)
    starttls: bool = setting(True, "Encrypt with STARTTLS and verify the relay's certificate; mail is never sent in "
                                   "clear. false is allowed only for a relay on this machine (smtp_host = "
                                   "\"127.0.0.1\" or \"localhost\"), whose traffic never leaves it.")
    ca_file: Path = setting(Path(""), "The CA certificate (PEM) the relay's certificate is verified against. Empty: "
                                      "the system's trust store.", may_be_empty=True)
    username: str = setting("", "Log in to the relay as this user (after STARTTLS). Empty: no authentication.",
                            may_be_empty=True)
    password_file: Path = setting(Path(""), "A file holding only the relay password (mode 0600, readable by the "
                                            "agent alone; never put the password in agent.toml). Required with "
                                            "username; read at each sending.", may_be_empty=True)
    sender: str = setting("", "The notices' From address. Empty: servicegate@ and this machine's full host name.",
                          may_be_empty=True)
    technical_staff: tuple[str, ...] = setting((), "E-mail addresses of the technical staff (biomedical "
                                                   "engineering, site IT) told of every remote session.",
                                               may_be_empty=True)
    clinical_staff: tuple[str, ...] = setting((), "E-mail addresses of the clinical staff (e.g. the department's "
                                                  "lead technologist) told of every remote session.",
                                              may_be_empty=True)
    timeout_s: int = setting(10, "How long the relay may take to answer before a sending counts as failed (it is "
                                 "tried again later).", minimum=1, maximum=300)


@dataclass(frozen=True)
class Config:
    """The whole configuration. `source` is the file it came from (None: built-in defaults)."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    portal: PortalConfig = field(default_factory=PortalConfig)
    anonymizer: AnonymizerConfig = field(default_factory=AnonymizerConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    modality: ModalityConfig = field(default_factory=ModalityConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    updates: UpdatesConfig = field(default_factory=UpdatesConfig)
    source: Path | None = field(default=None, compare=False)


# Section name -> its dataclass, in the order of `Config`.
SECTIONS: dict[str, type[Any]] = {
    name: hint for name, hint in get_type_hints(Config).items() if name != "source"
}


def load(path: Path) -> Config:
    """Read and validate `path`. Raises ConfigError with a message naming file, key, value and fix."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found. Create it (see docs/configuration.md) "
                          f"or pass --config PATH.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}.") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the syntax and start again.") from None
    return from_mapping(data, path)


def from_mapping(data: dict[str, Any], path: Path | None = None) -> Config:
    """Validate a parsed TOML document against the schema."""
    where = str(path) if path else "configuration"
    base = path.parent if path else Path.cwd()
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{name}]{_did_you_mean(name, SECTIONS)}. "
                              f"Allowed sections: {', '.join(SECTIONS)}.")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{name}] must be a table (a [{name}] header followed by keys), "
                              f"not {value!r}.")
        sections[name] = read_section(where, name, SECTIONS[name], value, base)
    config = Config(**sections, source=path)
    proxy = config.portal.proxy_url
    if proxy and not proxy.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: [portal] proxy_url = {proxy!r} is not a proxy URL; write it like "
                          "\"http://proxy.example:3128\".")
    _check_notify(where, config.notify)
    _check_tasks(where, config)
    try:
        hotkey_parts(config.console.hotkey)
    except ValueError as exc:
        raise ConfigError(f"{where}: [console] {exc}.") from None
    if not _DISPLAY.fullmatch(config.screen.display):
        raise ConfigError(f"{where}: [screen] display = {config.screen.display!r} is not a local X display; write it "
                          "like \":0\" (the console's display).")
    window = config.updates.auto_approve_virus_patterns
    if window and not _WINDOW.fullmatch(window):
        raise ConfigError(f"{where}: [updates] auto_approve_virus_patterns = {window!r} is not a window of local time; "
                          "write it like \"22:00-06:00\" (hours 00 to 23), or leave it empty.")
    if config.paths.audit_dir == Path(""):
        config = replace(config, paths=replace(config.paths, audit_dir=config.paths.state_dir / "audit"))
    if config.updates.virus_pattern_dir == Path(""):
        config = replace(config, updates=replace(config.updates,
                                                 virus_pattern_dir=config.paths.state_dir / "virus-patterns"))
    return config


def _check_notify(where: str, notify: NotifyConfig) -> None:
    """What [notify] needs beyond each key's own type and range."""
    if not notify.starttls and notify.smtp_host and notify.smtp_host not in LOCAL_RELAYS:
        raise ConfigError(f"{where}: [notify] starttls = false is allowed only for a relay on this machine "
                          f"(smtp_host = \"127.0.0.1\" or \"localhost\"); to smtp_host = {notify.smtp_host!r} the "
                          "notices (and the password) would cross the network in clear. Set starttls = true.")
    if notify.username and notify.password_file == Path(""):
        raise ConfigError(f"{where}: [notify] username = {notify.username!r} needs password_file: the relay "
                          "password is kept in a file of its own (mode 0600), never in agent.toml. Write it to a "
                          "file and set password_file = \"/etc/servicegate/smtp-password\".")
    if notify.password_file != Path("") and not notify.username:
        raise ConfigError(f"{where}: [notify] password_file = {str(notify.password_file)!r} is set but username is "
                          "empty, so the password would never be used. Set username, or remove password_file.")
    addresses = [("sender", notify.sender)] if notify.sender else []
    addresses += [(key, address) for key in ("technical_staff", "clinical_staff") for address in getattr(notify, key)]
    for key, address in addresses:
        if not _ADDRESS.fullmatch(address):
            raise ConfigError(f"{where}: [notify] {key}: {address!r} is not an e-mail address; write each address "
                              "alone, like \"radiology-it@hospital.example\" (no name, no <>, no spaces).")


def _check_tasks(where: str, config: Config) -> None:
    """What [tasks] and [modality] need beyond each key's own type and range."""
    tool = config.modality.tool
    if tool and not Path(tool[0]).is_absolute():
        raise ConfigError(f"{where}: [modality] tool = {list(tool)!r}: the program must be an absolute path "
                          f"(the search path is never used), like \"/opt/vendor/bin/{Path(tool[0]).name}\".")
    if config.modality.block_renew_s >= config.modality.block_lease_s:
        raise ConfigError(f"{where}: [modality] block_renew_s = {config.modality.block_renew_s} must be less than "
                          f"block_lease_s = {config.modality.block_lease_s}, or the block would lapse between "
                          "renewals; e.g. block_renew_s = 5 with block_lease_s = 15.")
    for folder in config.tasks.allowed_dirs:
        if not Path(folder).is_absolute():
            raise ConfigError(f"{where}: [tasks] allowed_dirs: {folder!r} is not an absolute path; write each "
                              "folder in full, like \"/var/log/modality\".")


def defaults() -> Config:
    """The built-in configuration (what an empty agent.toml means)."""
    return from_mapping({})


def read_section(where: str, name: str, cls: type[Any], values: dict[str, Any], base: Path) -> Any:
    """One table of keys checked against a dataclass of `setting`s; the installer reads its [install] with it."""
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key [{name}] {key}{_did_you_mean(key, known)}. "
                              f"Allowed keys in [{name}]: {', '.join(known)}.")
        kwargs[key] = _value(where, f"[{name}] {key}", hints[key], known[key].metadata, value, base)
    return cls(**kwargs)


def _value(where: str, key: str, kind: Any, meta: Any, value: Any, base: Path) -> Any:
    if kind is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} = {value!r} is not a path; write it as a quoted string.")
        if value == "":
            if meta["may_be_empty"]:
                return Path("")
            raise ConfigError(f"{where}: {key} is empty; give a path (the default is {_path_default(key)}).")
        given = Path(value)
        path = given if given.is_absolute() else (base / given).resolve()
        if meta["max_bytes"] and len(str(path).encode()) > meta["max_bytes"]:
            raise ConfigError(f"{where}: {key} = {str(path)!r} is {len(str(path).encode())} bytes long; a socket "
                              f"path may have at most {meta['max_bytes']} bytes. Choose a shorter path.")
        return path
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} = {value!r} is not true or false; write true or false, unquoted.")
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key} = {value!r} is not a whole number; {_allowed(meta)}.")
        lo, hi = meta["minimum"], meta["maximum"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{where}: {key} = {value} is out of range; {_allowed(meta)}.")
        return value
    if kind == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: {key} = {value!r} is not a list of names; write it like "
                              f'["first", "second"] (an empty list: []).')
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: {key} = {value!r} names something twice; list each once.")
        return tuple(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} = {value!r} is not text; write it as a quoted string.")
        if meta["choices"] and value not in meta["choices"]:
            raise ConfigError(f"{where}: {key} = {value!r} is not allowed; {_allowed(meta)}.")
        return value
    raise TypeError(f"schema type {kind!r} has no validator")  # a programming error, caught by tests


def _path_default(key: str) -> str:
    section, name = key.strip("[").split("] ")
    return str(next(f.default for f in fields(SECTIONS[section]) if f.name == name))


def _allowed(meta: Any) -> str:
    if meta["choices"]:
        return "allowed: " + ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta["minimum"], meta["maximum"]
    if lo is not None and hi is not None:
        return f"allowed: a whole number from {lo} to {hi}"
    if lo is not None:
        return f"allowed: a whole number of at least {lo}"
    return "allowed: a whole number"


def _allowed_in_docs(kind: Any, meta: Any) -> str:
    if kind is bool:
        return "true or false"
    if kind == tuple[str, ...]:
        return "a list of text, may be empty"
    if kind is Path:
        rule = "a path, may be empty" if meta["may_be_empty"] else "a path"
        return f"{rule} of at most {meta['max_bytes']} bytes" if meta["max_bytes"] else rule
    if kind is str and not meta["choices"]:
        return "text"
    return _allowed(meta).removeprefix("allowed: ")


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def markdown() -> str:
    """docs/configuration.md, generated from the schema."""
    lines = [
        "# Configuration (`agent.toml`)",
        "",
        "<!-- Generated by `python -m agent.config --markdown`; a test fails when this file is stale. -->",
        "",
        f"The agent reads `{DEFAULT_CONFIG_PATH}` (or the file given with `--config PATH`). Every key is",
        "optional; an empty file means the defaults below. An unknown section or key, a value of the",
        "wrong type or out of range, or a missing file stops the agent with one message that names the",
        "file, the key, the bad value and what is allowed (exit code 2), never a traceback.",
        "",
    ]
    for name, cls in SECTIONS.items():
        lines += [f"## [{name}]", "", inspect.cleandoc(cls.__doc__ or ""), "",
                  "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        hints = get_type_hints(cls)
        for f in fields(cls):
            kind = hints[f.name]
            default = f.default if f.default is not MISSING else ""
            shown = f'"{"" if default == Path("") else default}"' if kind in (str, Path) else \
                json.dumps(list(default)) if kind == tuple[str, ...] else str(default)
            meta = f.metadata
            allowed = _allowed_in_docs(kind, meta)
            name = "list" if kind == tuple[str, ...] else kind.__name__.lower()
            lines.append(f"| `{f.name}` | {name} | `{shown}` | {allowed} | {meta['help']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        sys.stdout.write(markdown())
        return 0
    sys.stderr.write("usage: python -m agent.config --markdown\n")
    return 2



if __name__ == "__main__":
    raise SystemExit(main())
