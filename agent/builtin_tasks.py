"""The agent's own task programs: what `{builtin}` in the task catalog runs (see agent.tasks).

    python -m agent.builtin_tasks collect-logs OUTPUT        the tails of the modality's log files
    python -m agent.builtin_tasks system-report OUTPUT       OUTPUT/system-report.txt, technical only
    python -m agent.builtin_tasks fetch-file PATH OUTPUT     one file from an allowed folder
    python -m agent.builtin_tasks install-patterns FILE VERSION SHA256
                                                             approved virus patterns into the pattern folder
    python -m agent.builtin_tasks install-software FILE VERSION SHA256
                                                             an approved bundle, handed to the upgrade service
                                                             (servicegate-upgrade.path, as root)
    python -m agent.builtin_tasks install-configuration FILE VERSION SHA256
                                                             the vendor's approved threshold rules into the
                                                             configuration folder
    python -m agent.builtin_tasks share-screen               x11vnc on the console's display, for the agent's
                                                             relay (agent.screen)

The task runner starts each as a subprocess, with these variables in its environment:

    SERVICEGATE_LOG_FILES         the log files collect-logs copies, separated by os.pathsep
    SERVICEGATE_LOG_TAIL_BYTES    how much of each log's end collect-logs keeps (default 4 MiB)
    SERVICEGATE_ALLOWED_DIRS      the folders fetch-file may read from, separated by os.pathsep
    SERVICEGATE_PATTERN_DIR       where install-patterns installs virus patterns ([updates] virus_pattern_dir)
    SERVICEGATE_UPDATE_DIR        the agent's update folder (`<state_dir>/updates`): install-software's request to
                                  the upgrade service
    SERVICEGATE_CONFIG_DIR        where install-configuration installs the vendor's configuration
                                  (`<state_dir>/updates/configuration`)
    SERVICEGATE_VNC_PORT, SERVICEGATE_VNC_PASSWORD, SERVICEGATE_VNC_VIEW_ONLY, DISPLAY
                                  share-screen's loopback port, one-time password, whether x11vnc is view-only,
                                  and the console's display: given by the agent to that task alone

Exit codes: 0 done; 1 failed (no log file could be copied, a file could not be read or written); 2 bad
usage or a refused path. Every problem is one line on stderr, never a traceback.

A subprocess pays for its imports on every task, so this module needs only the standard library, psutil,
agent.fsutil, agent.versions and agent.tasks.confine (which itself imports only agent.errors and agent.protocol);
install-configuration alone imports telemetry.thresholds, to check the rules with the parser the agent uses.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import psutil

from agent import __version__
from agent.errors import UsageError
from agent.fsutil import atomic_symlink, atomic_write, fsync_dir
from agent.tasks import confine
from agent.versions import VERSION, version_key

LOG_TAIL_BYTES = 4 * 1024 * 1024
REPORT_NAME = "system-report.txt"
TOP_PROCESSES = 15
_CHUNK = 64 * 1024
_USAGE = ("usage: python -m agent.builtin_tasks collect-logs OUTPUT | system-report OUTPUT | fetch-file PATH OUTPUT | "
          "install-patterns FILE VERSION SHA256 | install-software FILE VERSION SHA256 | "
          "install-configuration FILE VERSION SHA256 | share-screen")
UPGRADE_REQUEST = "upgrade-request.json"  # in the update folder: what servicegate-upgrade.path waits for
UPGRADE_CANCEL = "upgrade-cancel.json"  # in the update folder: the kill switch stops the handed-over upgrade
THRESHOLDS_FILE = "thresholds.toml"  # in each version of the vendor's configuration (install-configuration)


class Refused(Exception):
    """Bad usage or a path this program will not read: exit 2."""


# ---- collect-logs ---------------------------------------------------------------------------------------


def collect_logs(output: Path, environ: Mapping[str, str]) -> int:
    """Copy the last LOG_TAIL_BYTES of each configured log file into `output`, named by its base name."""
    files = [name for name in environ.get("SERVICEGATE_LOG_FILES", "").split(os.pathsep) if name]
    limit = _tail_bytes(environ)
    if not files:
        print("no log files are configured ([telemetry] log_files in agent.toml); nothing collected")
        return 0
    output.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    copied = 0
    for name in files:
        try:
            target, size = _copy_tail(Path(name), output, taken, limit)
        except OSError as exc:
            print(f"collect-logs: {name}: not copied ({exc.strerror or exc})", file=sys.stderr)
            continue
        print(f"{target} {size} bytes")
        copied += 1
    return 0 if copied else 1


def _tail_bytes(environ: Mapping[str, str]) -> int:
    text = environ.get("SERVICEGATE_LOG_TAIL_BYTES", "")
    if not text:
        return LOG_TAIL_BYTES
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise Refused(f"SERVICEGATE_LOG_TAIL_BYTES = {text[:40]!r}; give a whole number of bytes, at least 1")
    return int(text)


def _copy_tail(source: Path, output: Path, taken: set[str], limit: int) -> tuple[str, int]:
    """Copy the last `limit` bytes of `source` to a fresh name in `output`: (that name, bytes copied)."""
    fd = _open_regular(str(source), os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: a FIFO must not hang us
    with os.fdopen(fd, "rb") as src:
        size = os.fstat(fd).st_size
        src.seek(max(0, size - limit))
        name = _free_name(source.name or "log", taken)
        return name, _copy_to(src, output / name, limit)


def _free_name(name: str, taken: set[str]) -> str:
    """`name`, or with a numeric suffix ("app-2.log") if another log file already has that base name."""
    stem, dot, suffix = name.partition(".")
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}{dot}{suffix}"
    taken.add(candidate)
    return candidate


# ---- system-report --------------------------------------------------------------------------------------


def system_report(output: Path) -> int:
    """Write OUTPUT/system-report.txt (`report_lines`)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / REPORT_NAME).write_text("\n".join(report_lines()), encoding="utf-8")
    print(REPORT_NAME)
    return 0


def report_lines() -> list[str]:
    """The system report, line by line (also sent with a service request, agent.reporting). Technical facts only:
    no host addresses, no command lines (a command line may name a patient), no user names."""
    lines = [f"ServiceGate system report, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", ""]
    for title, section in (("System", _system), ("CPU", _cpu), ("Memory", _memory), ("Disks", _disks),
                           ("Network interfaces", _network), (f"Top {TOP_PROCESSES} processes by memory",
                                                              _processes)):
        lines += [f"[{title}]", *section(), ""]
    return lines


def _system() -> list[str]:
    uptime = int(time.time() - psutil.boot_time())
    days, rest = divmod(uptime, 86400)
    return [f"os: {platform.platform()}",
            f"kernel: {platform.system()} {platform.release()} {platform.version()}",
            f"python: {platform.python_version()} ({platform.python_implementation()})",
            f"servicegate: {__version__}",
            f"uptime: {days} d {time.strftime('%H:%M:%S', time.gmtime(rest))}"]


def _cpu() -> list[str]:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return [f"cpus: {psutil.cpu_count() or '?'} logical, {psutil.cpu_count(logical=False) or '?'} physical",
            f"load average (1, 5, 15 min): {load}"]


def _memory() -> list[str]:
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    return [f"memory: total {_size(memory.total)}, available {_size(memory.available)}, used {memory.percent}%",
            f"swap: total {_size(swap.total)}, used {_size(swap.used)} ({swap.percent}%)"]


def _disks() -> list[str]:
    lines = []
    for part in psutil.disk_partitions(all=False):
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError as exc:
            lines.append(f"{part.mountpoint} ({part.fstype}): usage unavailable ({exc.strerror or exc})")
            continue
        lines.append(f"{part.mountpoint} ({part.fstype}, {part.device}): total {_size(usage.total)}, "
                     f"used {_size(usage.used)} ({usage.percent}%), free {_size(usage.free)}")
    return lines or ["no disk partitions found"]


def _network() -> list[str]:
    """Names, state and speed. Never an address: the hospital's network layout is not ours to send."""
    return [f"{name}: {'up' if nic.isup else 'down'}, speed {f'{nic.speed} Mb/s' if nic.speed else 'unknown'}, "
            f"mtu {nic.mtu}" for name, nic in sorted(psutil.net_if_stats().items())] or ["no interfaces found"]


def _processes() -> list[str]:
    """The processes using most memory: name, pid, resident size. Names only, never a command line."""
    found = []
    for process in psutil.process_iter(["name", "memory_info"]):
        memory = process.info.get("memory_info")
        if memory is not None:
            found.append((memory.rss, process.pid, process.info.get("name") or "?"))
    found.sort(reverse=True)
    return [f"{name} (pid {pid}): rss {_size(rss)}" for rss, pid, name in found[:TOP_PROCESSES]]


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


# ---- fetch-file -----------------------------------------------------------------------------------------


def fetch_file(path: str, output: Path, environ: Mapping[str, str]) -> int:
    """Copy one regular file from the allowed folders to OUTPUT/<its base name>.

    The agent checked `path` before starting us, but the file (or a folder on its way) may have become a
    symbolic link since: so the rule of agent.tasks.confine is applied again, and the file is then opened one
    path component at a time from its allowed folder, never following a link (O_NOFOLLOW)."""
    allowed = [Path(folder) for folder in environ.get("SERVICEGATE_ALLOWED_DIRS", "").split(os.pathsep) if folder]
    try:
        real = confine(path, allowed)
    except UsageError as exc:
        raise Refused(f"fetch-file: {exc}") from None
    fd = _open_inside(real, allowed, path)
    with os.fdopen(fd, "rb") as src:
        output.mkdir(parents=True, exist_ok=True)
        name = Path(path).name
        size = _copy_to(src, output / name, None)
    print(f"{name} {size} bytes")
    return 0


def _open_inside(real: Path, allowed: Sequence[Path], given: str) -> int:
    """A read-only descriptor of the regular file `real`, reached from its allowed folder without following a
    single symbolic link. Raises Refused if the way there is no longer what confine() checked."""
    roots = [root for root in (_resolved(folder) for folder in allowed)
             if root is not None and (root == real or root in real.parents)]
    if not roots:
        raise Refused(f"fetch-file: {given!r} is outside the allowed folders")
    fd = os.open(roots[0], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in real.relative_to(roots[0]).parts:
            try:
                inner = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                raise Refused(f"fetch-file: {given!r} changed after it was checked ({exc.strerror}); "
                              "a symbolic link is never followed") from None
            os.close(fd)
            fd = inner
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused(f"fetch-file: {given!r} is not a regular file; fetch-file copies one file, not a folder")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _resolved(folder: Path) -> Path | None:
    try:
        return folder.resolve(strict=True)
    except (OSError, RuntimeError):
        return None


# ---- shared ---------------------------------------------------------------------------------------------


def _open_regular(path: str, flags: int) -> int:
    """A descriptor of `path` if it is a regular file; OSError otherwise (a folder, a device, a FIFO)."""
    fd = os.open(path, flags | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def _copy_to(src: BinaryIO, target: Path, limit: int | None) -> int:
    """Copy `src` (at most `limit` bytes) to the new file `target`, never overwriting one; the byte count. A
    half-written copy is removed."""
    copied = 0
    with target.open("xb") as dst:
        try:
            while limit is None or copied < limit:
                chunk = src.read(_CHUNK if limit is None else min(_CHUNK, limit - copied))
                if not chunk:
                    break
                dst.write(chunk)
                copied += len(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    return copied


# ---- install-patterns, install-configuration ----------------------------------------------------------------


def install_patterns(file: Path, version: str, sha256: str, environ: Mapping[str, str]) -> int:
    """Virus patterns an approved update brought (agent.updates), installed into `[updates] virus_pattern_dir`
    (install_version)."""
    folder = Path(environ.get("SERVICEGATE_PATTERN_DIR", ""))
    if not folder.is_absolute():
        raise Refused("install-patterns: SERVICEGATE_PATTERN_DIR is not set to a folder ([updates] virus_pattern_dir)")
    return install_version(folder, file, file.name, version, sha256, "virus patterns")


def install_configuration(file: Path, version: str, sha256: str, environ: Mapping[str, str]) -> int:
    """The vendor's configuration an approved update brought: its telemetry threshold rules, checked with the
    agent's own rules parser before anything switches, installed as `<dir>/<version>/thresholds.toml`
    (install_version). The agent takes them at once (agent.reporting.threshold_rules)."""
    folder = Path(environ.get("SERVICEGATE_CONFIG_DIR", ""))
    if not folder.is_absolute():
        raise Refused("install-configuration: SERVICEGATE_CONFIG_DIR is not set to the agent's configuration folder")
    from telemetry.thresholds import RuleError, load_rules  # only here: the other tasks do without telemetry

    def check(copy: Path) -> None:
        try:
            load_rules(copy)
        except RuleError as exc:
            raise Refused(f"install-configuration: {exc} Nothing was installed; tell the vendor.") from None

    return install_version(folder, file, THRESHOLDS_FILE, version, sha256, "configuration", check)


def install_version(folder: Path, file: Path, name: str, version: str, sha256: str, what: str,
                    check: Callable[[Path], None] | None = None) -> int:
    """`file` copied as `<folder>/<version>/<name>`, checked (its approved hash, and `check` on the copy), then
    `<folder>/current` switched to it by renaming a new symlink over the old one; if the installed copy does not
    check out through `current`, the switch is undone. A crash leaves `current` at the old or the new version,
    whole: the copy, its folder and the folder it is renamed into are fsync'd before the switch. Run again after a
    crash that came after the switch, it finds the version in use and checked, and finishes. The one before stays;
    older ones are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / version
    staging = folder / f".{version}.new"
    if staging.exists():  # an interrupted earlier try
        shutil.rmtree(staging)
    in_use = os.readlink(folder / "current") if (folder / "current").is_symlink() else None
    if in_use == version:
        if (folder / "current" / name).is_file() and _sha256(folder / "current" / name) == sha256:
            _prune(folder, version, None)  # an earlier run was stopped after its switch
            print(f"{what} {version} are in use already in {folder} (an earlier run switched to them)")
            return 0
        raise Refused(f"version {version} of the {what} is in use in {folder}, but not the approved file; nothing "
                      "was changed")
    staging.mkdir()
    copy = staging / name
    digest = hashlib.sha256()
    with file.open("rb") as source, copy.open("wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    try:
        if digest.hexdigest() != sha256:
            raise Refused(f"{file.name} does not have the approved sha256; nothing was installed")
        if check is not None:
            check(copy)
    except Refused:
        shutil.rmtree(staging)
        raise
    fsync_dir(staging)
    if target.exists():
        shutil.rmtree(target)  # left by an installation that stopped before its switch
    staging.rename(target)
    fsync_dir(folder)  # the rename is on disk before `current` can name it
    atomic_symlink(folder / "current", version)
    if _sha256(folder / "current" / name) != sha256:
        if in_use is not None:
            atomic_symlink(folder / "current", in_use)
        print(f"the installed copy of the {what} does not check out; back to {in_use}", file=sys.stderr)
        return 1
    _prune(folder, version, in_use)
    print(f"{what} {version} installed in {folder} (previous: {in_use or 'none'})")
    return 0


def _prune(folder: Path, version: str, previous: str | None) -> None:
    """Remove the versions but `version` and the one before (`previous`; None: the highest other one)."""
    others = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
              and p.name != version]
    older = [p.name for p in others if VERSION.fullmatch(p.name) and version_key(p.name) < version_key(version)]
    keep = previous if previous is not None else max(older, key=version_key, default=None)
    for old in others:
        if old.name != keep:
            shutil.rmtree(old)


# ---- install-software ---------------------------------------------------------------------------------------


def install_software(file: Path, version: str, sha256: str, environ: Mapping[str, str]) -> int:
    """A software update (an offline bundle, `servicegate-VERSION-linux-x86_64.tar.gz`) the technologist approved:
    checked against its approved hash and handed to the upgrade service by writing the request it waits for. The
    agent runs unprivileged and is what the upgrade restarts, so the upgrade runs outside it, as root, in a unit of
    its own (`servicegate-upgrade.service`, started by `servicegate-upgrade.path`). That service trusts nothing of
    this folder: it copies the file, checks it against the vendor's signed targets metadata with the TUF root it keeps
    itself, and only then unpacks it and runs the bundle's own `servicegate-install upgrade`."""
    folder = Path(environ.get("SERVICEGATE_UPDATE_DIR", ""))
    if not folder.is_absolute():
        raise Refused("install-software: SERVICEGATE_UPDATE_DIR is not set to the agent's update folder")
    if _sha256(file) != sha256:
        raise Refused(f"install-software: {file.name} does not have the approved sha256; nothing was handed over")
    request = {"version": version, "file": str(file), "target": f"software/{file.name}", "sha256": sha256}
    (folder / UPGRADE_CANCEL).unlink(missing_ok=True)  # a kill switch's for an earlier one
    atomic_write(folder / UPGRADE_REQUEST, (json.dumps(request, indent=2) + "\n").encode())
    print(f"ServiceGate {version} handed to the upgrade service ({folder / UPGRADE_REQUEST})")
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---- share-screen -------------------------------------------------------------------------------------------

_VNC_PASSWORD = re.compile(r"[A-Za-z0-9]{8,64}")


def share_screen(environ: Mapping[str, str]) -> int:
    """Become x11vnc on the console's display (agent.screen): listening on 127.0.0.1 only, on the port the agent
    chose, with the agent's one-time password (handed over in a file x11vnc reads and deletes: never in an argv,
    which every user can read), for one viewer: the agent's relay. The clipboard is not shared either way (it may
    hold patient data), and `-viewonly` when the session does not allow control at all. By exec, so that the task's
    process is x11vnc itself: stopping the task stops the server."""
    port = environ.get("SERVICEGATE_VNC_PORT", "")
    password = environ.get("SERVICEGATE_VNC_PASSWORD", "")
    display = environ.get("DISPLAY", "")
    if not port.isdigit() or not 1024 <= int(port) <= 65535:
        raise Refused("share-screen: SERVICEGATE_VNC_PORT is not a port number (the agent starts this task itself)")
    if not _VNC_PASSWORD.fullmatch(password):
        raise Refused("share-screen: SERVICEGATE_VNC_PASSWORD is not set (the agent starts this task itself)")
    if not display.startswith(":"):  # agent.config checked [screen] display
        raise Refused(f"share-screen: DISPLAY {display!r} is not a local X display like :0 ([screen] display)")
    program = shutil.which("x11vnc", path=environ.get("PATH", os.defpath))
    if program is None:
        raise Refused("share-screen: x11vnc is not installed (Debian package x11vnc)")
    secret = Path(environ.get("TMPDIR", "/tmp")) / "vnc-password"
    descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    argv = [program, "-display", display, "-passwdfile", f"rm:{secret}", "-localhost", "-rfbport", port, "-once",
            "-timeout", "60", "-nosel", "-norc", "-nolookup", "-noxdamage", "-noipv6", "-quiet",
            *(["-viewonly"] if environ.get("SERVICEGATE_VNC_VIEW_ONLY") != "0" else [])]
    sys.stdout.flush()
    os.execve(program, argv, {k: v for k, v in environ.items() if k != "SERVICEGATE_VNC_PASSWORD"})
    return 0  # not reached


# ---- the command line -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    commands: dict[str, tuple[int, Callable[[list[str]], int]]] = {
        "collect-logs": (1, lambda a: collect_logs(Path(a[0]), env)),
        "system-report": (1, lambda a: system_report(Path(a[0]))),
        "fetch-file": (2, lambda a: fetch_file(a[0], Path(a[1]), env)),
        "install-patterns": (3, lambda a: install_patterns(Path(a[0]), a[1], a[2], env)),
        "install-software": (3, lambda a: install_software(Path(a[0]), a[1], a[2], env)),
        "install-configuration": (3, lambda a: install_configuration(Path(a[0]), a[1], a[2], env)),
        "share-screen": (0, lambda a: share_screen(env)),
    }
    if not args or args[0] not in commands:
        what = f"unknown command {args[0]!r}" if args else "no command given"
        print(f"agent.builtin_tasks: {what}; {_USAGE}", file=sys.stderr)
        return 2
    count, run = commands[args[0]]
    if len(args) != count + 1 or not all(args[1:]):
        print(f"agent.builtin_tasks: {args[0]} takes {count} argument(s); {_USAGE}", file=sys.stderr)
        return 2
    try:
        return run(args[1:])
    except Refused as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OSError, psutil.Error) as exc:
        print(f"agent.builtin_tasks: {args[0]} failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
