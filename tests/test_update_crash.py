"""Crash tests of the processes that install updates, beside `servicegate-install upgrade` (tests/test_installer.py):
the agent's `install-patterns` and `install-software` tasks (agent/builtin_tasks.py) and the upgrade service's
`servicegate-install apply-request` (installer/cli.py). Each is killed with SIGKILL at each step; afterwards the
device has the old or the new version, never a mix, says which, and the next run finishes the installation.

The agent's tasks are killed by the kernel itself, at an exact system call: strace's fault injection
(`strace -f -qq -o /dev/null --trace=SYSCALL --inject=SYSCALL:signal=SIGKILL:when=N PROGRAM...`) sends SIGKILL when
the program enters the N-th call of SYSCALL, and a pending SIGKILL keeps that call from being made. strace counts
`when=` per system call (and per process), not over a set: `--inject=write,rename:...:when=2` kills at the second
write or the second rename, whichever comes first. So each system call of FS_SYSCALLS is taken in turn, with N = 1,
2, ... until a run ends by itself: the program is killed once before every call of the set it makes.

The upgrade service runs the bundle's installer, which runs pip: a kill must take the whole process group, which no
injected signal does. So it is killed as the existing upgrade crash test kills, after each step the installer reports,
seen in an strace of the group (the service passes the installer's output on only when it has ended); and by the
kernel at each commit point of its own, made after the installer has ended (nothing else of the group runs then).

What no kill can show, since a killed process's writes stay in the page cache, is whether they would survive a power
loss: test_each_commit_point_of_an_agent_task_is_fsynced checks in a trace that each commit point is fsync'd.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from installer import verify
from installer.layout import UPGRADE_REQUEST, UPGRADE_RESULT, Layout
from tests.bundle_fixtures import CURRENT_VERSION, UPGRADE_VERSION, BundleFactory
from tests.test_installer import SITE, UNITS, apply_request, hand_over, install, installer

REPO = Path(__file__).resolve().parents[1]
# Every system call by which a process changes a file or a folder, in x86_64's old and `at` forms: making a folder,
# writing, changing a mode, fsync, renaming, making a symbolic link, removing. (A file made with open(O_CREAT) is not
# among them: strace cannot pick those openat calls out of the many that read. Whatever such a file holds is written
# with write, so the kill at its first write leaves it as the kill at its creation would: empty.)
FS_SYSCALLS = ("mkdir", "mkdirat", "write", "fchmod", "fsync", "fdatasync", "rename", "renameat", "renameat2",
               "symlink", "symlinkat", "unlink", "unlinkat", "rmdir")
MOST_CALLS = 200  # of one system call in one run of an agent task; more means the run never ends
KILLED = -signal.SIGKILL  # strace ends with the signal that ended its program
PATTERN_FILE = "patterns.cvd"
PATTERN_VERSIONS = ("0.9", "1.0", "1.1")  # 0.9 and 1.0 are installed; installing 1.1 switches and removes 0.9


def require_strace() -> str:
    """strace (Debian package strace, debian-packages.txt). Off CI a machine without it skips; CI must have it."""
    path = shutil.which("strace")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strace is not installed: make test installs it (debian-packages.txt)")
        pytest.skip("strace is not installed (Debian package strace; make test installs it as root)")
    return path


Run = subprocess.CompletedProcess[str]


def builtin_task(*args: str, env: dict[str, str], traced: Sequence[str] = ()) -> Run:
    """`python -m agent.builtin_tasks ARGS` as the task runner starts it (after `traced`, a strace command line).
    PYTHONDONTWRITEBYTECODE: the interpreter writes no cached bytecode of its own, so every run makes the same calls."""
    return subprocess.run([*traced, sys.executable, "-m", "agent.builtin_tasks", *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env}, cwd=REPO,
                          timeout=120, check=False)


def killed_at_each_call(strace: str, args: Sequence[str],
                        fresh: Callable[[str], dict[str, str]]) -> Iterator[tuple[str, Run]]:
    """The builtin task `args` killed on entering each call of FS_SYSCALLS it makes, one run per call, each in the
    environment `fresh(label)` gives (a fresh copy of the state before). Yields (label, run): each killed run, and
    per system call the first run that was not killed (N one more than the calls it makes), which must succeed."""
    for syscall in FS_SYSCALLS:
        for count in range(1, MOST_CALLS + 1):
            label = f"{syscall} #{count}"
            run = builtin_task(*args, env=fresh(label), traced=[
                strace, "-f", "-qq", "-o", "/dev/null", f"--trace={syscall}",
                f"--inject={syscall}:signal=SIGKILL:when={count}"])
            yield label, run
            if run.returncode != KILLED:
                break
        else:
            pytest.fail(f"{args[0]} made more than {MOST_CALLS} {syscall} calls", pytrace=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- install-patterns ---------------------------------------------------------------------------------------------


@pytest.fixture
def pattern_files(tmp_path: Path) -> dict[str, Path]:
    """One pattern file per version, all named alike (as a vendor's are), each of 100 KiB: more than one write."""
    files = {}
    for number, version in enumerate(PATTERN_VERSIONS):
        path = tmp_path / "vendor" / version / PATTERN_FILE
        path.parent.mkdir(parents=True)
        path.write_bytes(hashlib.sha512(version.encode()).digest() * (100 * 1024 // 64) + bytes([number]))
        files[version] = path
    return files


def install_patterns(files: dict[str, Path], version: str, folder: Path, traced: Sequence[str] = ()) -> Run:
    return builtin_task("install-patterns", str(files[version]), version, sha256(files[version]),
                        env={"SERVICEGATE_PATTERN_DIR": str(folder)}, traced=traced)


def patterns_in_use(folder: Path, files: dict[str, Path]) -> str:
    """The version `<folder>/current` points to, after checking that it is one whole version: a folder of that name
    holding exactly that version's file, byte for byte."""
    current = folder / "current"
    assert current.is_symlink(), f"{current} is gone"
    version = os.readlink(current)
    assert version in files, f"{current} points to {version!r}"
    assert current.resolve(strict=True) == (folder / version).resolve(), f"{current} dangles"
    assert [p.name for p in current.iterdir()] == [PATTERN_FILE]
    assert sha256(current / PATTERN_FILE) == sha256(files[version]), f"{current} -> {version}: not its file"
    return version


def test_virus_patterns_killed_at_any_step_are_the_old_or_the_new_version_never_a_mix(
        tmp_path: Path, pattern_files: dict[str, Path]) -> None:
    """install-patterns 1.1 over 1.0 (0.9 kept from before, and removed by this installation), killed on entering
    each file-system call it makes: `current` is then always 1.0 or 1.1, whole, and a run afterwards installs 1.1.
    Both happen: killed before the switch, 1.0 is in use; after it, 1.1."""
    strace = require_strace()
    installed = tmp_path / "installed"
    for version in ("0.9", "1.0"):
        first = install_patterns(pattern_files, version, installed)
        assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in installed.iterdir()) == ["0.9", "1.0", "current"]

    def folder_of(label: str) -> Path:
        return tmp_path / "tries" / label.replace(" #", "-")

    def fresh(label: str) -> dict[str, str]:
        shutil.copytree(installed, folder_of(label), symlinks=True)
        return {"SERVICEGATE_PATTERN_DIR": str(folder_of(label))}

    outcomes: dict[str, str] = {}
    rerun_failed: dict[str, str] = {}
    args = ["install-patterns", str(pattern_files["1.1"]), "1.1", sha256(pattern_files["1.1"])]
    for label, run in killed_at_each_call(strace, args, fresh):
        folder = folder_of(label)
        if run.returncode != KILLED:  # this system call's every call was tried: this run was not killed
            assert run.returncode == 0, f"{label}: {run.stdout}{run.stderr}"
            assert patterns_in_use(folder, pattern_files) == "1.1"
            continue
        outcomes[label] = patterns_in_use(folder, pattern_files)
        again = install_patterns(pattern_files, "1.1", folder)
        in_use, left = patterns_in_use(folder, pattern_files), sorted(p.name for p in folder.iterdir())
        if (again.returncode, in_use, left) != (0, "1.1", ["1.0", "1.1", "current"]):
            rerun_failed[label] = f"exit {again.returncode} ({again.stderr.strip()}); current {in_use}; left {left}"
        shutil.rmtree(folder)
    assert set(outcomes.values()) == {"1.0", "1.1"}, outcomes  # killed before the switch and after it
    # A run afterwards (not killed) finishes: 1.1 in use, 1.0 kept, 0.9 and every temporary name gone.
    assert rerun_failed == {}, "\n".join(f"killed at {label}, {outcomes[label]} in use; a run afterwards: {what}"
                                          for label, what in rerun_failed.items())


# ---- install-software ---------------------------------------------------------------------------------------------


def test_a_software_hand_over_killed_at_any_step_leaves_no_request_or_a_whole_one(tmp_path: Path) -> None:
    """install-software (the agent's hand-over to the upgrade service) killed on entering each file-system call it
    makes: the request the path unit waits for is then absent, or complete JSON naming the version and the file; a
    run afterwards writes it. Both happen."""
    strace = require_strace()
    staged = tmp_path / "staging" / "u1" / f"servicegate-{UPGRADE_VERSION}-linux-x86_64.tar.gz"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"a bundle, as far as install-software can tell: it checks the approved hash only\n" * 500)
    digest = sha256(staged)
    args = ["install-software", str(staged), UPGRADE_VERSION, digest]

    def update_dir(label: str) -> Path:
        return tmp_path / "tries" / label.replace(" #", "-") / "updates"

    def fresh(label: str) -> dict[str, str]:
        update_dir(label).mkdir(parents=True)
        return {"SERVICEGATE_UPDATE_DIR": str(update_dir(label))}

    def handed_over(folder: Path) -> bool:
        """Whether the request is there; if it is, it is whole and names this version and file."""
        path = folder / UPGRADE_REQUEST
        if not path.exists():
            return False
        request = json.loads(path.read_text(encoding="utf-8"))  # whole JSON, never a part of it
        assert (request["version"], request["file"], request["sha256"]) == (UPGRADE_VERSION, str(staged), digest)
        return True

    outcomes: dict[str, bool] = {}
    for label, run in killed_at_each_call(strace, args, fresh):
        folder = update_dir(label)
        if run.returncode != KILLED:
            assert run.returncode == 0, f"{label}: {run.stdout}{run.stderr}"
            assert handed_over(folder), label
            continue
        outcomes[label] = handed_over(folder)
        again = builtin_task(*args, env={"SERVICEGATE_UPDATE_DIR": str(folder)})
        assert again.returncode == 0, f"after a kill at {label}: {again.stderr}"
        assert handed_over(folder), label
    assert set(outcomes.values()) == {False, True}, outcomes


# ---- every commit point fsync'd -----------------------------------------------------------------------------------

SYNC_TRACE = "fsync,fdatasync,rename,renameat,renameat2,symlink,symlinkat"
_CALL = re.compile(r"^(?:\d+ +)?(?P<name>\w+)\((?P<args>.*)\) += (?P<result>-?\d+)")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FD_PATH = re.compile(r"^\d+<(?P<path>.*)>")


def _real(path: str) -> str:
    """`path` with its folder's symbolic links resolved (strace -y names a descriptor's file so)."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def durability_faults(trace: Sequence[str]) -> list[str]:
    """What in a run's trace (strace -f -y -z of SYNC_TRACE) breaks the rule of a crash-safe installation: what is
    renamed into place (a file or a folder; a symbolic link needs none) was fsync'd first, and the folder it was
    renamed into is fsync'd before the next rename and before the run ends. Each rename to a name that does not start
    with a dot is a commit point (a dot name is a temporary one)."""
    faults: list[str] = []
    synced: set[str] = set()
    links: set[str] = set()
    pending: tuple[str, str] | None = None  # the last commit whose folder has not been fsync'd since
    for line in trace:
        call = _CALL.match(line)
        if call is None:
            continue
        name, args = call["name"], call["args"]
        strings = [_real(s) for s in _STRING.findall(args)]
        if name in ("fsync", "fdatasync"):
            described = _FD_PATH.match(args)
            path = described["path"] if described else ""
            synced.add(path)
            if pending is not None and path == os.path.dirname(pending[1]):
                pending = None
        elif name.startswith("symlink"):
            links.add(strings[-1])
        elif name.startswith("rename"):
            old, new = strings[0], strings[-1]
            if os.path.basename(new).startswith("."):
                continue
            if pending is not None:
                faults.append(f"{pending[0]} -> {pending[1]} is not made durable (no fsync of "
                              f"{os.path.dirname(pending[1])}) before the next commit point, {old} -> {new}")
            if old not in links and old not in synced:
                faults.append(f"{old} is renamed to {new} without an fsync of it first")
            pending = (old, new)
    if pending is not None:
        faults.append(f"{pending[0]} -> {pending[1]} is not made durable (no fsync of {os.path.dirname(pending[1])}) "
                      "before the run ends")
    return faults


def test_the_durability_rule_finds_a_rename_that_is_not_fsynced() -> None:
    """The rule itself, on made-up traces: a folder renamed into place and not fsync'd before the next switch, and
    a file renamed into place without an fsync of its own, are faults; fsync'd, they are not."""
    trace = ['fsync(4</v/.1.new/f>)       = 0', 'fsync(3</v/.1.new>) = 0', 'rename("/v/.1.new", "/v/1") = 0',
             'symlink("1", "/v/.current.new") = 0', 'rename("/v/.current.new", "/v/current") = 0',
             'fsync(3</v>) = 0']
    assert durability_faults(trace) == [
        "/v/.1.new -> /v/1 is not made durable (no fsync of /v) before the next commit point, "
        "/v/.current.new -> /v/current"]
    assert durability_faults([*trace[:3], "fsync(3</v>) = 0", *trace[3:]]) == []
    assert durability_faults(['rename("/v/.f.tmp", "/v/f") = 0', "fsync(3</v>) = 0"]) == [
        "/v/.f.tmp is renamed to /v/f without an fsync of it first"]


@pytest.mark.parametrize("task", ["install-patterns", "install-software"])
def test_each_commit_point_of_an_agent_task_is_fsynced(tmp_path: Path, pattern_files: dict[str, Path],
                                                       task: str) -> None:
    """What the kill tests cannot see (a killed process leaves its writes in the page cache): the same installations,
    traced, fsync each file and folder before it is renamed into place, and the folder it went into before the next
    commit point, so that a power loss, too, leaves the old or the new version."""
    strace = require_strace()
    folder = tmp_path / "folder"
    trace = tmp_path / "trace"
    traced = [strace, "-f", "-qq", "-y", "-z", "-o", str(trace), f"--trace={SYNC_TRACE}"]
    if task == "install-patterns":
        assert install_patterns(pattern_files, "1.0", folder).returncode == 0
        run = install_patterns(pattern_files, "1.1", folder, traced)
    else:
        bundle = pattern_files["1.1"]  # install-software checks the approved hash only
        run = builtin_task(task, str(bundle), UPGRADE_VERSION, sha256(bundle), env={"SERVICEGATE_UPDATE_DIR":
                                                                                    str(folder)}, traced=traced)
    assert run.returncode == 0, run.stderr
    lines = trace.read_text(encoding="utf-8").splitlines()
    assert any((call := _CALL.match(line)) and call["name"].startswith("rename") for line in lines), lines
    faults = durability_faults(lines)
    assert faults == [], "\n".join(faults)


# ---- servicegate-install apply-request ----------------------------------------------------------------------------

# The upgrade service's process and every process it starts: the bundle's installer started (execve), each step it
# reports (write of a `done:` line), and the service's own commit points, the calls its kill points are taken from.
STEP_TRACE = "execve,write,fsync,fdatasync,rename,renameat,renameat2,symlink,symlinkat,unlink"
COMMIT_CALLS = ("fsync", "fdatasync", "rename", "renameat", "renameat2", "symlink", "symlinkat", "unlink")
_PID_CALL = re.compile(r"^(?P<pid>\d+) +(?P<name>\w+)\(")
_DONE = re.compile(r'write\(1, "  (done: (?:[^"\\]|\\.)*)')


def service_command(root: Path) -> list[str]:
    """servicegate-upgrade.service's ExecStart with --root, as tests.test_installer.apply_request runs it."""
    argv = next(line.split("=", 1)[1] for line in (UNITS / "servicegate-upgrade.service").read_text().splitlines()
                if line.startswith("ExecStart=")).split()
    return [str(root / argv[0].lstrip("/")), *argv[1:], "--root", str(root)]


def _group_members(pgid: int) -> list[int]:
    """The processes of the process group `pgid` that still run (a zombie has ended)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def kill_group(pgid: int) -> None:
    """SIGKILL to every process of the group, and back once each has ended: nothing of a killed run writes after it."""
    while members := _group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for pid in members:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)  # readable once the process has ended
                assert poller.poll(60_000), f"process {pid} still runs a minute after SIGKILL"
            finally:
                os.close(pidfd)


def service_step(line: str, work: Path) -> str | None:
    """The step of the upgrade an strace line shows, if any: the bundle's own installer started (the service has
    checked and unpacked the bundle in `work`), or one of the steps that installer reports done."""
    if f'execve("{work}/' in line and '/servicegate-install"' in line:
        return "the bundle's installer started"
    done = _DONE.search(line)
    return done[1].removesuffix("\\n") if done else None


def service_killed_at_step(strace: str, root: Path, log: Path, kill_at: int) -> tuple[str | None, list[str], int]:
    """The upgrade service's command with every process it starts followed by strace, and its whole process group
    killed (SIGKILL) as soon as the trace shows the `kill_at`-th step (service_step), so inside the next one. (That
    step, the trace up to it, -9), or (None, the whole trace, the exit code) when the service finished first. (Its own
    output cannot show the steps: it gets the bundle's installer's output only when that has ended.)"""
    work = verify.work_dir(Layout(root))
    read_end, write_end = os.pipe()
    argv = [strace, "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-s", "300", f"--trace={STEP_TRACE}",
            "-o", f"/dev/fd/{write_end}", *service_command(root)]
    lines: list[str] = []
    steps = 0
    with log.open("a") as out, subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                                pass_fds=(write_end,)) as process:
        os.close(write_end)
        try:
            with open(read_end, encoding="utf-8", errors="replace") as trace:
                for line in trace:
                    lines.append(line)
                    step = service_step(line, work)
                    if step is not None:
                        steps += 1
                        if steps == kill_at:
                            kill_group(process.pid)
                            return step, lines, KILLED
            return None, lines, process.wait(timeout=60)
        finally:
            kill_group(process.pid)


def service_killed_by_kernel(strace: str, root: Path, log: Path, syscall: str, count: int) -> int:
    """The upgrade service's command killed by the kernel on entering its own `count`-th `syscall` call (strace
    follows no process it starts, so none of theirs counts); the group killed too, should anything of it run on."""
    argv = [strace, "-qq", "-o", "/dev/null", f"--trace={syscall}", f"--inject={syscall}:signal=SIGKILL:when={count}",
            *service_command(root)]
    with log.open("a") as out, subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True) as process:
        try:
            return process.wait(timeout=900)
        finally:
            kill_group(process.pid)


def own_commit_points(trace: Sequence[str]) -> list[tuple[str, int]]:
    """The calls of COMMIT_CALLS the service's own process made in a traced run, in order: (system call, which call
    of it)."""
    calls = [(match["pid"], match["name"]) for line in trace if (match := _PID_CALL.match(line))]
    assert calls, trace[:5]
    service = calls[0][0]  # the first line: its execve
    points: list[tuple[str, int]] = []
    for pid, name in calls:
        if pid == service and name in COMMIT_CALLS:
            points.append((name, 1 + sum(1 for earlier, _ in points if earlier == name)))
    return points


@pytest.mark.slow
def test_the_upgrade_service_killed_at_any_step_leaves_the_old_or_the_new_release_and_finishes_when_started_again(
        bundle: Path, bundle_factory: BundleFactory, tmp_path: Path) -> None:
    """`servicegate-install apply-request` (servicegate-upgrade.service) on a software update the agent handed over,
    killed with its whole process group (the bundle's installer, pip) as the power loss or systemd's kill would: at
    the start of the bundle's installer and after each step it reports, so inside the next one; then by the kernel on
    entering each of the service's own commit points (its result written, the request removed). Each time `current`
    is a complete release, the old or the new one, and `servicegate --version` says which; the request is still there
    (so the path unit starts the service again), or, killed after its removal, the result `installed` is; and the
    next run finishes: the new version, the result `installed`, the request gone. Both versions are seen."""
    strace = require_strace()
    newer = bundle_factory(UPGRADE_VERSION)
    root = tmp_path / "root"
    layout = Layout(root)
    site = tmp_path / "site.toml"
    site.write_text(SITE)
    assert install(bundle, site, root).returncode == 0
    handed = hand_over(bundle_factory, root, UPGRADE_VERSION, tmp_path / "vendor")
    assert handed.returncode == 0, handed.stderr
    request_file, result_file = layout.update_dir / UPGRADE_REQUEST, layout.update_dir / UPGRADE_RESULT
    request = request_file.read_bytes()
    log = tmp_path / "service.log"
    seen: dict[str, str] = {}

    def after_the_kill(label: str) -> None:
        version = os.readlink(layout.current).removeprefix("releases/")
        assert version in (CURRENT_VERSION, UPGRADE_VERSION), label
        assert (layout.release(version) / "release.json").is_file(), label  # a complete release
        says = subprocess.run([str(layout.program()), "--version"], capture_output=True, text=True, check=True)
        assert says.stdout.strip() == f"servicegate {version}", label
        if request_file.exists():  # the path unit starts the service again
            assert request_file.read_bytes() == request, label
        else:  # killed after the request's removal: nothing is left to do, and the answer is there
            assert result_file.exists(), label
        if result_file.exists():  # written: before the request's removal or after it
            assert json.loads(result_file.read_text())["outcome"] == "installed", label
        seen[label] = version
        finished = apply_request(root)
        assert finished.returncode == 0, f"after a kill at {label}:\n{finished.stdout}{finished.stderr}"
        installed_now(label)
        roll_back()

    def installed_now(label: str) -> None:
        assert os.readlink(layout.current) == f"releases/{UPGRADE_VERSION}", label
        result = json.loads(result_file.read_text())
        assert (result["version"], result["outcome"]) == (UPGRADE_VERSION, "installed"), label
        assert not request_file.exists(), label
        assert not verify.work_dir(layout).exists(), label  # root's own copy, removed when done

    def roll_back() -> None:
        """The old release in use again, the new one gone and the request handed over again: as before the first
        try."""
        back = installer(newer, "rollback", "--root", str(root))
        assert back.returncode == 0, back.stdout + back.stderr
        shutil.rmtree(layout.release(UPGRADE_VERSION))
        result_file.unlink()
        request_file.write_bytes(request)

    kill_at = 0
    while True:  # killed after the start of the bundle's installer, then after each step it reports
        kill_at += 1
        step, trace, code = service_killed_at_step(strace, root, log, kill_at)
        if step is None:
            break
        after_the_kill(f"after {step!r}")
    assert code == 0, log.read_text()[-3000:]
    installed_now("the run that was not killed")
    assert kill_at > 3, trace[-20:]  # the installer started, and reported its steps
    points = own_commit_points(trace)
    assert ("rename", 1) in points, points  # the result written
    assert ("unlink", 1) in points, points  # the request removed
    roll_back()
    for syscall, count in points:  # the service's own commit points, after the upgrade
        code = service_killed_by_kernel(strace, root, log, syscall, count)
        assert code == KILLED, f"{syscall} #{count}: exit {code}; {log.read_text()[-3000:]}"
        after_the_kill(f"its own {syscall} #{count}")
    assert set(seen.values()) == {CURRENT_VERSION, UPGRADE_VERSION}, seen
