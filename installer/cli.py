"""`servicegate-install`: what site IT runs, from the unpacked bundle (`./servicegate-install install --site ...`).

Exit codes follow agent.errors.ExitCode: 0 done (or nothing to do), 1 a prerequisite is missing or a step failed
(and was rolled back), 2 a bad site file, bundle or command line, 3 installed but enrollment failed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import ConfigError, ExitCode
from installer import acceptance, checks, doctor, install, manage, service, site, verify
from installer.bundle import Bundle
from installer.layout import (
    SERVICE_USER,
    UNIT_NAME,
    UPGRADE_CANCEL,
    UPGRADE_REQUEST,
    UPGRADE_RESULT,
    Layout,
    site_config,
)
from installer.steps import (
    ROOT_OWNER,
    CommandFailed,
    Owner,
    Step,
    StepFailed,
    carry_out,
    clean_env,
    remove_tree,
    write_file,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servicegate-install", description="Install, check, upgrade and remove "
                                     "ServiceGate on this scanner, offline, from the unpacked bundle.")
    parser.add_argument("--bundle", type=Path, default=None, metavar="DIR",
                        help="the unpacked bundle (the launcher in the bundle passes its own folder)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inst = sub.add_parser("install", help="install this bundle's version with a site file; again: changes only "
                                          "what differs")
    inst.add_argument("--site", type=Path, required=True, metavar="FILE",
                      help="agent.toml for this scanner plus an [install] table (site.example.toml in the bundle)")
    inst.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                      help="install into this staging folder instead of / (no users, owners or systemd)")
    inst.add_argument("--dry-run", action="store_true", help="check and print the plan; change nothing")
    inst.add_argument("--enroll", action="store_true",
                      help="enroll at the vendor's portal ([install] portal_url, ca_fingerprint, device_id; asks "
                           "for the one-time password)")
    inst.add_argument("--otp-file", type=Path, metavar="FILE",
                      help="with --enroll: read the one-time password from this file instead of asking")
    inst.add_argument("--accept-unsynced-clock", action="store_true",
                      help="install although the kernel says the clock is not synchronised")
    up = sub.add_parser("upgrade", help="install this (newer) bundle beside the running version and switch to it; "
                                        "configuration, state and audit log stay")
    up.add_argument("--warn-seconds", type=_warn_seconds, default=60, metavar="N",
                    help="an active remote session sees a warning in the banner and ends (reason upgrade) after "
                         "this long (default 60)")
    up.add_argument("--stop-if", type=Path, metavar="FILE",
                    help="stop before switching when FILE exists (what the upgrade service passes: the kill switch "
                         "at the console); the running version stays")
    sub.add_parser("rollback", help="switch back to the version that ran before the last upgrade")
    un = sub.add_parser("uninstall", help="stop and remove the service, units and releases; the audit log, "
                                          "configuration and state stay")
    un.add_argument("--purge", action="store_true",
                    help="also remove configuration, state, keys, outbox and the users and groups the installer "
                         "created (asks first); the audit log stays")
    un.add_argument("--yes", action="store_true", help="with --purge: do not ask (for scripts)")
    sub.add_parser("doctor", help="check the installation: each item OK, or what to do")
    accept = sub.add_parser("acceptance", help="after install and enrollment: doctor's checks, then the enrolled "
                                               "portal, telemetry arriving, the audit log against the portal and the "
                                               "kill switch (pressed only when it changes nothing)")
    accept.add_argument("--portal", required=True, metavar="URL", help="the portal's address from the vendor's "
                                                                       "letter, https://...")
    accept.add_argument("--wait", type=float, default=60, metavar="SECONDS",
                        help="how long to wait for telemetry to reach the portal (default 60)")
    sub.add_parser("apply-request", help="install the software update the agent handed over (what "
                                         "servicegate-upgrade.service runs, as root)")
    for command in sub.choices.values():
        if command.prog.split()[-1] in ("upgrade", "rollback", "uninstall", "doctor", "acceptance",
                                        "apply-request"):
            command.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                                 help="the installation in this staging folder instead of /")
    return parser


def _warn_seconds(text: str) -> int:
    if not text.isdigit() or int(text) > 600:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole seconds from 0 to 600")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"install": install_command, "upgrade": upgrade_command, "rollback": rollback_command,
                    "uninstall": uninstall_command, "doctor": doctor_command, "acceptance": acceptance_command,
                    "apply-request": apply_request_command}
        return commands[args.command](args)
    except ConfigError as exc:
        print(f"servicegate-install: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except (CommandFailed, OSError) as exc:
        print(f"servicegate-install: {exc}\nNothing after this was done; run `servicegate-install doctor` to see "
              "where the installation stands.", file=sys.stderr)
        return int(ExitCode.FAILED)
    except KeyboardInterrupt:
        return int(ExitCode.FAILED)


def say(text: str) -> None:
    print(text, flush=True)


def open_bundle(args: argparse.Namespace) -> Bundle:
    if args.bundle is None:
        raise ConfigError("no bundle given: run the servicegate-install inside the unpacked bundle, or pass "
                          "--bundle DIR.")
    return Bundle.open(args.bundle.resolve())


def install_command(args: argparse.Namespace) -> int:
    bundle = open_bundle(args)
    the_site = site.load(args.site)
    root = args.root.resolve()
    staging = root != Path("/")
    if staging and args.enroll:
        raise ConfigError("--enroll cannot be used with --root: enrollment binds the keys to this machine; enroll "
                          "on the scanner itself.")
    enrollment = site.enrollment(the_site) if args.enroll else None
    layout = Layout(root)
    say(f"ServiceGate {bundle.version}: installing into {root} with {the_site.path}"
        + (" (dry run: nothing is changed)" if args.dry_run else ""))
    installed = manage.current_version(layout)
    if installed is not None and installed != bundle.version:
        raise ConfigError(f"ServiceGate {installed} is installed here; this bundle is {bundle.version}: use "
                          "`servicegate-install upgrade` (or `rollback`), which keep the configuration and warn an "
                          "open session.")
    new_release = not install.release_complete(layout.release(bundle.version))
    problems = checks.prerequisites(bundle, layout, staging=staging, new_release=new_release, site=the_site,
                                    accept_unsynced_clock=args.accept_unsynced_clock)
    if problems:
        say("Cannot install; nothing was changed. Fix these first:")
        for problem in problems:
            say(f"  - {problem}")
        return int(ExitCode.FAILED)
    otp = _one_time_password(args) if enrollment and not install.enrolled(layout) and not args.dry_run else ""
    plan = install.install_plan(bundle, the_site, layout, staging=staging,
                                accept_unsynced_clock=args.accept_unsynced_clock)
    if args.dry_run:
        say("Plan:" if plan.steps else "Nothing to change: this version is installed as the site file says.")
        for step in plan.steps:
            say(f"  would: {step.what}")
        return 0
    if plan.steps:
        say(f"Installing ({len(plan.steps)} steps):")
        try:
            carry_out(plan.steps, say)
        except StepFailed as failed:
            _report_failure(failed)
            return int(ExitCode.FAILED)
    else:
        say("Nothing to change: this version is installed as the site file says.")
    enrolled_now = _enroll(layout, enrollment, otp) if enrollment and otp else None  # before the agent starts
    try:
        started = service.activate(layout, say, changed=bool(plan.steps) or bool(enrolled_now))
    except CommandFailed as exc:
        say(f"The files are installed, but systemd did not start the service: {exc}\n"
            f"Look at `journalctl -u {UNIT_NAME}`, fix what it says, then run `systemctl restart {UNIT_NAME}` (or "
            "`servicegate-install uninstall` to remove it again).")
        return int(ExitCode.FAILED)
    _summary(bundle, the_site, layout, staging=staging, started=started)
    return int(ExitCode.PARTIAL) if enrolled_now is False else 0


def _one_time_password(args: argparse.Namespace) -> str:
    if args.otp_file:
        try:
            return str(args.otp_file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"--otp-file {args.otp_file}: cannot read it ({exc.strerror}).") from None
    if not sys.stdin.isatty():
        raise ConfigError("--enroll needs the one-time password: run it in a terminal to be asked, or pass "
                          "--otp-file FILE.")
    return getpass.getpass("One-time enrollment password (from the vendor): ").strip()


def _enroll(layout: Layout, enrollment: dict[str, str], otp: str) -> bool:
    try:
        install.enroll(layout, enrollment, otp)
    except CommandFailed as exc:
        say(f"Installed, but enrollment failed: {exc}\nAsk the vendor for a new one-time password and install again "
            "with --enroll (or run `runuser -u servicegate -- servicegate enroll ...`: the keys must be the "
            "agent's own).")
        return False
    root_copy = verify.trusted_root(layout)
    tuf_root = layout.state_dir / "portal" / "tuf-root.json"
    if tuf_root.exists():  # the upgrade service's own copy of the vendor's TUF root, where only root writes
        write_file(root_copy, tuf_root.read_bytes(), 0o644, None if layout.root != Path("/") else ROOT_OWNER)
    say("  done: enrolled at the vendor's portal")
    return True


def _report_failure(failed: StepFailed) -> None:
    say(f"Failed: {failed.step.what}:\n  {failed.reason}")
    if failed.undone:
        say("Rolled back what this run had done:")
        for what in failed.undone:
            say(f"  undone: {what}")
    if failed.not_undone:
        say("Done before the failure, and not undone:")
        for what in failed.not_undone:
            say(f"  kept: {what}")
        say("Fix the cause above and run the same command again: it goes on from where it stopped.")
    else:
        say("The machine is as it was before this run. Fix the cause above and start again.")


def _summary(bundle: Bundle, the_site: site.Site, layout: Layout, *, staging: bool, started: bool) -> None:
    service = f"{UNIT_NAME} enabled and running" if started else (
        "not started (staging root)" if staging else
        f"systemd is not running on this machine: start {layout.program()} --config {layout.agent_toml} run as "
        "user servicegate yourself")
    enrolled = "enrolled" if install.enrolled(layout) else "not enrolled (servicegate enroll, or install with --enroll)"
    users = ", ".join(f"{user} ({the_site.groups_of()[key]})" for key, names in the_site.install.users().items()
                      for user in names)
    say(f"\nServiceGate {bundle.version} is installed.\n"
        f"  program:        {layout.current} -> releases/{bundle.version}\n"
        f"  configuration:  {layout.agent_toml}\n"
        f"  state, audit:   {layout.state_dir}\n"
        f"  service:        {service}\n"
        f"  users:          {users}\n"
        f"  enrollment:     {enrolled}\n"
        "Check it with: servicegate-install doctor")


def _layout(args: argparse.Namespace) -> tuple[Layout, bool]:
    root = args.root.resolve()
    if root == Path("/") and os.geteuid() != 0:
        raise ConfigError("run it as root (sudo): it changes the installed system.")
    return Layout(root), root != Path("/")


def _installed(layout: Layout) -> str:
    version = manage.current_version(layout)
    if version is None:
        raise ConfigError(f"ServiceGate is not installed in {layout.root} ({layout.current} is missing): use "
                          "`servicegate-install install`.")
    return version


def _carry(steps: list[Step]) -> bool:
    try:
        carry_out(steps, say)
    except StepFailed as failed:
        _report_failure(failed)
        return False
    return True


def upgrade_command(args: argparse.Namespace) -> int:
    layout, staging = _layout(args)
    return _upgrade(open_bundle(args), layout, staging, args.warn_seconds, stop_if=args.stop_if)


def _upgrade(bundle: Bundle, layout: Layout, staging: bool, warn_seconds: int, *, stop_if: Path | None = None) -> int:
    old = _installed(layout)
    if manage.version_key(bundle.version) == manage.version_key(old):
        say(f"ServiceGate {old} is installed already: nothing to upgrade.")
        return 0
    if manage.version_key(bundle.version) < manage.version_key(old):
        raise ConfigError(f"this bundle is {bundle.version}, older than the installed {old}: an upgrade never goes "
                          "back; use `servicegate-install rollback` to return to the version before.")
    say(f"ServiceGate: upgrading {old} -> {bundle.version} in {layout.root}")
    new_release = not install.release_complete(layout.release(bundle.version))
    problems = checks.prerequisites(bundle, layout, staging=staging, new_release=new_release)
    if problems:
        say("Cannot upgrade; nothing was changed. Fix these first:")
        for problem in problems:
            say(f"  - {problem}")
        return int(ExitCode.FAILED)
    owner = None if staging else ROOT_OWNER
    prepare, switch, changes = manage.upgrade_steps(bundle, layout, old, owner)
    for change in changes:
        say(f"  configuration: {change}")
    if _stopped(stop_if, old) or not _carry(prepare):  # the new release beside the old: unnoticed by the agent
        return int(ExitCode.FAILED)
    manage.announce(layout, bundle.version, warn_seconds, say, time.sleep)  # only now: the switch is next
    if _stopped(stop_if, old) or not _carry(switch):
        return int(ExitCode.FAILED)
    healthy = manage.restart_and_check(layout, bundle.version, say, time.sleep)
    if healthy is False:
        say(f"ServiceGate {bundle.version} did not start, or did not answer within {manage.HEALTHY_WITHIN_S} s: "
            f"switching back to {old}.")
        if not _carry(manage.rollback_steps(layout, bundle.version, old, owner)):
            return int(ExitCode.FAILED)  # _carry said what is left; doctor tells the rest
        back = manage.restart_and_check(layout, old, say, time.sleep)
        remove_tree(layout.release(bundle.version))  # never a rollback target, nor reused by the next try
        if back is False:
            say(f"ServiceGate {old} did not answer either: look at `journalctl -u {UNIT_NAME}` and run "
                "`servicegate-install doctor`.")
        else:
            say(f"ServiceGate {old} runs again; the failed release {bundle.version} was removed.")
        return int(ExitCode.FAILED)
    removed = manage.prune_releases(layout, {old, bundle.version})
    say(f"\nServiceGate {bundle.version} is installed; {old} stays for `servicegate-install rollback`."
        + (f" Removed older releases: {', '.join(removed)}." if removed else "")
        + ("" if healthy else f"\nsystemd does not run here: restart the agent yourself ({layout.program()} "
                              f"--config {layout.agent_toml} run, as user servicegate)."))
    return 0


def _stopped(stop_if: Path | None, old: str) -> bool:
    if stop_if is None or not stop_if.exists():
        return False
    say(f"Stopped before the switch: the kill switch was pressed at the console ({stop_if}). ServiceGate {old} stays "
        "in use; nothing was switched.")
    return True


def apply_request_command(args: argparse.Namespace) -> int:
    """What servicegate-upgrade.service runs (as root) when the agent handed over an approved software update: the
    bundle's own `servicegate-install upgrade`, its result left for the agent, the request removed."""
    layout, staging = _layout(args)
    request_file = layout.update_dir / UPGRADE_REQUEST
    if not request_file.exists():
        say(f"No software update is waiting ({request_file} does not exist).")
        return 0
    version = "?"
    cancel = layout.update_dir / UPGRADE_CANCEL
    try:
        request = json.loads(request_file.read_text(encoding="utf-8"))
        version = str(request["version"])
        if cancel.exists():
            return _answer(layout, staging, version, int(ExitCode.FAILED), "stopped by the kill switch at the console "
                           "before it started; nothing was changed")
        bundle = verify.verified_bundle(layout, request)  # nothing of the agent's folder is trusted
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        shutil.rmtree(verify.work_dir(layout), ignore_errors=True)
        return _answer(layout, staging, version, int(ExitCode.FAILED), f"the request cannot be used: {exc}")
    more = ["--stop-if", str(cancel), *(["--root", str(layout.root)] if staging else [])]
    try:
        done = subprocess.run([str(bundle.directory / "servicegate-install"), "upgrade", *more], capture_output=True,
                              text=True, env=clean_env(), check=False)
    except OSError as exc:
        return _answer(layout, staging, version, int(ExitCode.FAILED), f"the bundle's installer cannot run: {exc}")
    say(done.stdout + done.stderr)
    shutil.rmtree(verify.work_dir(layout), ignore_errors=True)
    return _answer(layout, staging, version, done.returncode, (done.stdout + done.stderr).strip()[-800:])


def _answer(layout: Layout, staging: bool, version: str, code: int, detail: str) -> int:
    """The upgrade's result for the agent (owned by its user, which removes it), and the request gone."""
    result = {"version": version, "outcome": "installed" if code == 0 else "failed", "detail": detail,
              "at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_file(layout.update_dir / UPGRADE_RESULT, (json.dumps(result, indent=2) + "\n").encode(), 0o600,
               None if staging else Owner(SERVICE_USER, SERVICE_USER))
    (layout.update_dir / UPGRADE_REQUEST).unlink(missing_ok=True)
    (layout.update_dir / UPGRADE_CANCEL).unlink(missing_ok=True)  # taken: the next update starts afresh
    return code


def rollback_command(args: argparse.Namespace) -> int:
    layout, staging = _layout(args)
    current = _installed(layout)
    target = manage.previous_version(layout, current)
    if target is None:
        say(f"No other complete release next to {current} in {layout.releases}: nothing to roll back to.")
        return int(ExitCode.FAILED)
    say(f"ServiceGate: rolling back {current} -> {target}")
    if not _carry(manage.rollback_steps(layout, current, target, None if staging else ROOT_OWNER)):
        return int(ExitCode.FAILED)
    healthy = manage.restart_and_check(layout, target, say, time.sleep)
    say(f"\nServiceGate {target} is the running version again; {current} stays installed beside it."
        + ("" if healthy else "\nsystemd does not run here: restart the agent yourself."))
    return 0 if healthy is not False else int(ExitCode.FAILED)


def uninstall_command(args: argparse.Namespace) -> int:
    layout, staging = _layout(args)
    config = site_config(layout)
    audit_dir = layout.at(str(config.paths.audit_dir))
    if args.purge and not args.yes and not _confirmed(layout):
        say("Not purged: nothing was changed.")
        return int(ExitCode.FAILED)
    running = [] if staging else service.agent_processes(layout)
    if not service.stop_and_disable(layout) and running:
        say(f"The agent still runs (pid {', '.join(map(str, running))}) and systemd does not manage it here: stop "
            "it first. Nothing was changed.")
        return int(ExitCode.FAILED)
    say(f"ServiceGate: uninstalling from {layout.root}" + (" (purge)" if args.purge else ""))
    steps = manage.uninstall_steps(layout) + (manage.purge_steps(layout, staging, audit_dir) if args.purge else [])
    if not _carry(steps):
        return int(ExitCode.FAILED)
    service.reload(layout)
    say(f"\nServiceGate is removed. The audit log stays in {audit_dir}: keep it at least "
        f"{config.audit.retention_days} days after its last record ([audit] retention_days), then delete it.")
    if not args.purge:
        say(f"Configuration ({layout.etc}) and state ({layout.state_dir}) stay too; `servicegate-install uninstall "
            "--purge` removes them and the users and groups the installer created.")
    return 0


def doctor_command(args: argparse.Namespace) -> int:
    layout, _staging = _layout(args)
    return _report(doctor.examine(layout))


def acceptance_command(args: argparse.Namespace) -> int:
    layout, _staging = _layout(args)
    if not args.portal.startswith("https://"):
        raise ConfigError(f"--portal must be the portal's https:// address from the vendor's letter, not "
                          f"{args.portal!r}")
    return _report(acceptance.examine(layout, args.portal, args.wait))


def _report(findings: list[doctor.Finding]) -> int:
    say(doctor.report(findings))
    bad = [f for f in findings if not f.ok]
    skipped = sum(f.skipped for f in findings)
    say(f"\n{len(findings) - len(bad) - skipped} of {len(findings)} checks OK"
        + (f", {skipped} not tried (SKIP says why)" if skipped else "") + "."
        + (" Fix the lines marked FIX." if bad else ""))
    return int(ExitCode.FAILED) if bad else 0


def _confirmed(layout: Layout) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError("--purge removes the configuration, keys and state for good: run it in a terminal to be "
                          "asked, or add --yes.")
    answer = input(f"Remove {layout.etc}, everything in {layout.state_dir} but the audit log, and the users and "
                   "groups the installer created? Type PURGE to confirm: ")
    return answer.strip() == "PURGE"
