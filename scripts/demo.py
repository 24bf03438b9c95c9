"""`make demo`: the whole product on one machine, in a temporary folder, on loopback only.

It sets up what a hospital and its vendor would have (the offline bundle installed into a staging folder, the
vendor's reference portal with its CA, the scanner enrolled with a one-time password, the agent, the simulated
modality as the scanner, the technologist's consent UI) and then walks through one service call, step by step:
access LIMITED for 2 hours; telemetry and a threshold alert; an engineer's session, its ID read out over the phone,
typed in, the privacy disclaimer confirmed, FULL access for this session alone (examinations blocked); the engineer's
one-time password; the banner; a diagnostics task; a study with patient data, de-identified before it leaves; a
view-only screen share; a virus-pattern update; End session (the kill switch) during a long task, and its receipt;
the audit log, verified against the portal's copy of its heads.

Each step says in plain words what happens, runs the real `servicegate` (and `servicegate-portal`) command a
technologist, site IT person or engineer would type, and checks that it did what it says: the demo exits 0 only when
every step did, else 1, naming the step. At the end it lists where everything is (logs, screenshots, the audit log,
what the portal received); the folder is kept.

    python scripts/demo.py [--workdir DIR]    # default: a new temporary folder, kept and named at the end
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom

from agent.client import wait_for_agent
from agent.errors import AgentUnreachableError
from portal.uploads import uploads_of

REPO = Path(__file__).resolve().parents[1]
PORTAL = str(Path(sys.executable).parent / "servicegate-portal")
SIM = str(Path(sys.executable).parent / "servicegate-sim-modality")
VNCDO = str(Path(sys.executable).parent / "vncdo")  # the engineer's VNC viewer (vncdotool, a test dependency)
DEVICE_ID = "CT-DEMO-01"
SAM = ("--engineer-id", "E-2002", "--name", "Sam Sample", "--company", "Vendor Service")
KIM = ("--engineer-id", "E-3003", "--name", "Kim Applications", "--company", "Vendor Applications")
PATIENT_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "ReferringPhysicianName",
                      "InstitutionName", "StudyInstanceUID")


class Failed(Exception):
    """A step did not do what it says: why, in plain words."""


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else "no output"


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "agent.toml"
        self.socket = workdir / "run" / "control.sock"
        self.used_codes: set[str] = set()
        self.display = ""  # the console's X display: this one, or a virtual one the demo starts
        self.own_display = False  # the demo started it (Xvfb): keys may be pressed on it
        self.processes: list[subprocess.Popen[Any]] = []  # stopped in reverse order at the end
        self.agent: subprocess.Popen[bytes] | None = None
        self.ui: subprocess.Popen[bytes] | None = None
        self.url = self.fingerprint = self.otp = self.sid = ""
        self.skipped: list[str] = []
        self.story_started = 0.0
        self.current = "the start"  # the step running: named when it fails

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """The demo in order: (what happens, in plain words; the step that makes it happen and checks it)."""
        return [
            ("Site IT installs the vendor's offline bundle (every wheel, the units, an SBOM) with one command; here "
             "into a staging folder (--root), on a scanner as root. Installing again changes nothing. (The demo then "
             "runs the agent from this checkout, without root or systemd.)",
             self.install_bundle),
            ("The vendor's portal starts (the reference portal, on 127.0.0.1) with its own certificate authority.",
             self.start_portal),
            ("The vendor registers the scanner and gives site IT a one-time password; site IT enrolls it: the CA is "
             "checked against its fingerprint, the device's key never leaves it.", self.enroll),
            ("The agent starts (no root here; it only connects out, nothing listens) and links to the portal over "
             "mutual TLS.", self.start_agent),
            ("The technologist's consent UI starts on the console's display.", self.start_ui),
            ("The technologist sets remote access to LIMITED for 2 hours.", self.access_limited),
            ("Telemetry: the scanner's statistics and logs go to the service centre on a schedule; a threshold "
             "crossed raises an alert there.", self.telemetry),
            ("The technologist reports an error and gets a case number; an engineer opens a session for it and reads "
             "its ID out over the phone.", self.open_session),
            ("The technologist types the ID in, reads who asks and why, confirms the privacy disclaimer and grants "
             "FULL access for this session alone (the standing grant stays LIMITED).", self.claim_full),
            ("The engineer proves who they are with a time-based one-time password, which the portal relays: the "
             "session is active, and examinations are blocked while it lasts.", self.authenticate_engineer),
            ("The banner shows on the technologist's screen while the session is active.", self.banner),
            ("The engineer runs the scanner's diagnostics: a task from the device's catalog, never a shell; its "
             "output is scrubbed before it leaves.", self.diagnostics),
            ("The engineer asks for a study with patient data: it is de-identified on the scanner, uploaded, and "
             "checked again at the portal.", self.fetch_study),
            ("An application specialist joins to look at a scan protocol (a second session: application support, "
             "LIMITED); the technologist confirms the screen share, which stays view-only.", self.share_screen),
            ("The service centre offers new virus patterns: checked with TUF (signed by the vendor, for this model, "
             "newer), approved by the technologist, installed.", self.virus_patterns),
            ("A long diagnostics run is going when a patient arrives: the technologist presses End session. The kill "
             "switch stops the task, releases the block, ends every session; a receipt stays on the screen.",
             self.end_session),
            ("The audit log: who accessed the scanner, when, at which level, for what; its hash chain, its signed "
             "checkpoints and the heads the portal holds agree.", self.audit),
        ]

    def run(self) -> None:
        steps = self.steps()
        started = time.monotonic()
        for number, (text, action) in enumerate(steps, 1):
            if action == self.access_limited:
                self.story_started = time.monotonic()
                print(f"\nSet up in {self.story_started - started:.0f} s. The story of one service call:")
            elapsed = int(time.monotonic() - started)
            self.current = f"step {number}/{len(steps)}: {text}"
            print(f"\n[{number}/{len(steps)} {'#' * number}{'.' * (len(steps) - number)} {elapsed // 60}:"
                  f"{elapsed % 60:02}] {text}", flush=True)
            action()


    def sg(self, *args: str, check: bool = True, quiet: bool = False) -> str:
        """A `servicegate` command; `quiet`: the demo only looks at its answer."""
        command = [sys.executable, "-m", "agent.cli", "--config", str(self.config), *args]
        if not quiet:
            print(f"  $ servicegate {shlex.join(args)}", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        for line in [] if quiet else (result.stdout + result.stderr).rstrip().splitlines():
            print(f"    {line}")
        if check and result.returncode != 0:
            raise Failed(f"`servicegate {shlex.join(args)}` failed with exit code {result.returncode}: "
                         f"{_last_line(result)}")
        return result.stdout

    def portal(self, *args: str) -> str:
        """A `servicegate-portal` command on the portal's data folder, as the vendor would type it."""
        print(f"  $ servicegate-portal {shlex.join(args)}", flush=True)
        result = subprocess.run([PORTAL, *args, "--data-dir", str(self.workdir / "portal")], capture_output=True,
                                text=True, timeout=60)
        for line in (result.stdout + result.stderr).rstrip().splitlines()[:12]:
            print(f"    {line}")
        if result.returncode != 0:
            raise Failed(f"`servicegate-portal {shlex.join(args)}` failed: {_last_line(result)}")
        return result.stdout

    def start_portal(self) -> None:
        """The vendor's reference portal on 127.0.0.1 (any free port): its URL and CA fingerprint."""
        print("  $ servicegate-portal serve --port 0", flush=True)
        portal = subprocess.Popen([PORTAL, "serve", "--data-dir", str(self.workdir / "portal"), "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=(self.workdir / "portal.log").open("wb"), text=True)
        self.processes.append(portal)
        assert portal.stdout is not None
        url = fingerprint = ""
        for line in portal.stdout:
            print(f"    {line.rstrip()}")
            if found := re.search(r"at (https://\S+)", line):
                url = found[1]
            if found := re.search(r"fingerprint: (\S+)", line):
                fingerprint = found[1]
                break
        if not fingerprint:
            raise Failed(f"the portal did not start; see {self.workdir / 'portal.log'}")
        host, port = url.removeprefix("https://").split(":")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                self.url, self.fingerprint = url, fingerprint
                return
            except OSError:
                time.sleep(0.05)
        raise Failed("the portal does not accept connections")

    def start_modality(self) -> Path:
        """The simulated modality (portal/sim_modality.py): its services, logs, protocols, DICOM store and examination
        block stand in for a scanner's; the default task catalog and the examination block act on it."""
        modality = self.workdir / "modality"
        print(f"  $ servicegate-sim-modality --state {modality} init", flush=True)
        subprocess.run([SIM, "--state", str(modality), "init"], check=True, capture_output=True, timeout=60)
        return modality

    def modality(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(subprocess.run(
            [SIM, "--state", str(self.workdir / "modality"), "status"], capture_output=True, text=True, timeout=60,
            check=True).stdout)
        return state

    def write_config(self) -> None:
        rules = self.workdir / "thresholds.toml"
        rules.write_text('[[rule]]\nname = "demo-uptime"\nmetric = "system.uptime"\ncomparison = ">"\nlimit = 60\n'
                         'severity = "info"\n')  # holds at once on any machine up for a minute: an alert to show
        machine_id = self.workdir / "machine-id"  # this demo's machine: the identity seam, not /etc/machine-id
        machine_id.write_text("5e1f0c0ffee0d15ea5e0000000000001\n")
        self.config.write_text(
            "# Written by make demo: everything lives in this folder.\n"
            f'[paths]\nstate_dir = "{self.workdir / "state"}"\ncontrol_socket = "{self.socket}"\n'
            f'[telemetry]\nthresholds = "{rules}"\ncollect_s = 5\npush_s = 5\n'
            f'log_files = ["{self.workdir / "modality" / "logs" / "acquisition.log"}"]\n'
            f'[portal]\nmachine_id_file = "{machine_id}"\nproduct_uuid_file = "{self.workdir / "no-uuid"}"\n'
            f'product_serial_file = "{self.workdir / "no-serial"}"\ninbox_wait_s = 5\n'
            f'[modality]\ntool = ["{SIM}", "--state", "{self.workdir / "modality"}"]\n'
            f'[tasks]\nallowed_dirs = ["{self.workdir / "modality" / "logs"}"]\n'
            f'[updates]\nmodel = "CT-DEMO"\nvirus_pattern_dir = "{self.workdir / "virus-patterns"}"\n'
            + (f'[screen]\ndisplay = "{self.display}"\n' if self.display else "")
        )

    def start_agent(self) -> None:
        log = (self.workdir / "agent.log").open("wb")
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "--config", str(self.config), "run"],
                                 stdout=log, stderr=subprocess.STDOUT)
        self.agent = agent
        self.processes.append(agent)
        try:
            if wait_for_agent(self.socket, alive=lambda: agent.poll() is None):
                print(f"  agent running, pid {agent.pid}, control socket {self.socket}")
                self.wait("the link to the portal", lambda: '"connected"' in self.sg("status", "--json", quiet=True))
                self.sg("status")
                return
        except AgentUnreachableError:
            raise Failed("the agent did not answer within 30 s") from None
        raise Failed(f"the agent stopped at start; see {self.workdir / 'agent.log'}")

    def start_console_display(self) -> None:
        """The console's X display, which the consent UI shows on and the screen is shared from: this one when there
        is one (DISPLAY), else a virtual one (Xvfb, with openbox) when Xvfb is installed; else none."""
        if os.environ.get("DISPLAY"):
            self.display = os.environ["DISPLAY"]
            return
        if shutil.which("Xvfb") is None:
            return
        read, write = os.pipe()
        log = (self.workdir / "xvfb.log").open("wb")
        print("  $ Xvfb -screen 0 1280x800x24 -nolisten tcp   (the console's display: no screen here)", flush=True)
        self.processes.append(subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24",
                                                "-nolisten", "tcp"], pass_fds=(write,), stdout=log,
                                               stderr=subprocess.STDOUT))
        os.close(write)
        with os.fdopen(read) as displayfd:
            number = displayfd.readline().strip()  # written once it accepts connections
        if not number.isdigit():
            raise Failed(f"Xvfb did not start; see {self.workdir / 'xvfb.log'}")
        self.display, self.own_display = f":{number}", True
        if shutil.which("openbox"):
            self.processes.append(subprocess.Popen(["openbox"], env={**os.environ, "DISPLAY": self.display}, stdout=log,
                                            stderr=subprocess.STDOUT))

    def start_ui(self) -> None:
        """The technologist's consent UI: real windows on the console's display, else offscreen; either way the
        banner and each receipt are saved as PNG in `screenshots/`."""
        runtime = self.workdir / "run" / "console"  # the console session's own runtime folder: a UI already running
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)  # for this user elsewhere does not stop this one
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        if self.display:
            env.update(DISPLAY=self.display, QT_QPA_PLATFORM="xcb")
        else:
            env["QT_QPA_PLATFORM"] = "offscreen"
        where = f"on display {self.display}" if self.display else "offscreen (no display here)"
        print(f"  $ servicegate ui      ({where}; screenshots in {self.workdir / 'screenshots'})", flush=True)
        log = (self.workdir / "ui.log").open("wb")
        self.ui = subprocess.Popen([sys.executable, "-m", "consent_ui", "--socket", str(self.socket), "--screenshots",
                                    str(self.workdir / "screenshots")], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(self.ui)

    def wait(self, what: str, condition: Callable[[], object], timeout_s: float = 60) -> None:
        """Until `condition` holds; an error while asking (the agent or the portal busy) counts as not yet."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except (Failed, subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError) as exc:
                last = f" (last answer: {exc})"
            time.sleep(0.3)
        raise Failed(f"{what} did not happen within {timeout_s:.0f} s{last}; see agent.log and portal.log")

    def authenticate(self, session_id: str) -> None:
        """The engineer reads their one-time password (here from the portal's tool) and sends it to the device. A
        code is accepted once: a second session within the same 30 seconds waits for the next code."""
        code = self.portal("engineer", "totp", "--device", DEVICE_ID).strip()
        if code in self.used_codes:
            print("    (that code was used already; the next one comes within 30 seconds)")
            self.wait("the next one-time password", lambda: self.totp() not in self.used_codes, timeout_s=40)
            code = self.portal("engineer", "totp", "--device", DEVICE_ID).strip()
        self.used_codes.add(code)
        self.portal("engineer", "authenticate", "--session", session_id, "--code", code)

    def totp(self) -> str:
        return subprocess.run([PORTAL, "engineer", "totp", "--device", DEVICE_ID, "--data-dir",
                               str(self.workdir / "portal")], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()

    def portal_holds(self) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(subprocess.run(
            [PORTAL, "show", "--device-id", DEVICE_ID, "--data-dir", str(self.workdir / "portal")],
            capture_output=True, text=True, timeout=60, check=True).stdout)
        return shown

    def install_bundle(self) -> None:
        """The installer on the offline bundle `make dist` builds, into a staging root: what site IT does first."""
        print("  $ make dist", flush=True)
        built = subprocess.run([sys.executable, str(REPO / "scripts" / "dist.py"), "--out", str(self.workdir / "dist")],
                               capture_output=True, text=True, timeout=900)
        if built.returncode != 0:
            raise Failed(f"make dist failed:\n{built.stdout}{built.stderr}")
        digest, _, tarball = built.stdout.strip().partition("  ")
        print(f"    {Path(tarball).name}  sha256 {digest[:16]}...")
        subprocess.run(["tar", "xzf", tarball, "-C", str(self.workdir / "dist")], check=True)
        bundle = Path(tarball[:-len("-linux-x86_64.tar.gz")])
        sbom = json.loads((bundle / "sbom.cdx.json").read_text())
        print(f"    the SBOM (CycloneDX) lists {len(sbom['components'])} components, each with version and hash")
        site = self.workdir / "site.toml"
        site.write_text(f'[install]\nconsole_users = ["{getpass.getuser()}"]\n\n[sessions]\nidle_timeout_min = 20\n')
        for _ in range(2):
            command = ["./servicegate-install", "install", "--site", "../../site.toml", "--root", "../../staging",
                       "--accept-unsynced-clock"]
            print(f"  $ cd {bundle.name} && {shlex.join(command)}", flush=True)
            result = subprocess.run(command, cwd=bundle, capture_output=True, text=True, timeout=600)
            for line in (result.stdout + result.stderr).rstrip().splitlines():
                print(f"    {line}")
            if result.returncode != 0:
                raise Failed("servicegate-install install failed")

    # ---- set-up ----------------------------------------------------------------------------------------------------

    def enroll(self) -> None:
        otp = re.search(r"password (\S+)", self.portal("device", "add", "--device-id", DEVICE_ID))
        if otp is None:
            raise Failed("the portal gave no one-time password for the device")
        self.start_modality()
        self.start_console_display()
        self.write_config()
        self.sg("enroll", "--portal", self.url, "--ca-fingerprint", self.fingerprint, "--otp", otp[1],
                "--device-id", DEVICE_ID)
        if not (self.portal_holds().get("device") or {}).get("binding"):
            raise Failed("the portal does not list the device as enrolled")

    # ---- the story -------------------------------------------------------------------------------------------------

    def access_limited(self) -> None:
        self.sg("access", "set", "limited", "--for", "2h")
        shown = json.loads(self.sg("access", "show", "--json", quiet=True))
        left = (datetime.fromisoformat(shown["until"]) - datetime.now(UTC)).total_seconds() if shown.get("until") \
            else 0
        if shown["level"] != "limited" or not 7100 < left <= 7200:
            raise Failed(f"access is {shown['level']} (until {shown.get('until')}), not limited for 2 hours")
        self.sg("access", "show")

    def telemetry(self) -> None:
        self.wait("a sample and an alert at the portal", lambda: {"alert", "metric"} <= set(
            self.portal_holds()["kinds"]))
        self.sg("telemetry", "status")
        held = self.portal_holds()
        print(f"    the portal holds {held['records']} records from {DEVICE_ID}: {', '.join(held['kinds'])}")
        for alert in held["alerts"][:1]:
            print(f"    alert at the service centre: {alert['body']}")

    def open_session(self) -> None:
        self.sg("request-service", "gantry error 4711 after the morning warm-up", "--urgency", "normal")
        case = json.loads(self.sg("service-requests", "--json", quiet=True))[-1]["case_id"]
        self.sid = self.portal("engineer", "open-session", "--device", DEVICE_ID, *SAM, "--reason",
                               "gantry error 4711", "--level", "full", "--case-id", case).split()[0]
        print(f'    the engineer, on the phone: "The session ID is {self.sid[:4]} {self.sid[4:]}."')

    def claim_full(self) -> None:
        self.sg("session", "claim", f"{self.sid[:4]} {self.sid[4:]}", "--level", "full", "--accept-disclaimer")
        claimed = self.session(self.sid)
        if (claimed["state"], claimed["requested_level"], claimed["confirmed_by"]) != ("authenticating", "full",
                                                                                       getpass.getuser()):
            raise Failed(f"the session is {claimed['state']} at {claimed['requested_level']}, confirmed by "
                         f"{claimed['confirmed_by']}: not confirmed at full, waiting for the engineer")

    def authenticate_engineer(self) -> None:
        self.authenticate(self.sid)
        self.wait("the session to be active", lambda: self.session(self.sid)["state"] == "active", timeout_s=30)
        self.sg("status")
        self.wait("the examination block", lambda: self.modality()["blocked"], timeout_s=20)
        self.sg("examinations", "status")

    def banner(self) -> None:
        if self.ui is not None and self.ui.poll() is not None:
            raise Failed(f"the consent UI stopped (exit code {self.ui.returncode}); see {self.workdir / 'ui.log'}")
        picture = self.workdir / "screenshots" / f"banner-{self.sid}-0.png"
        self.wait("the session banner on the technologist's screen", picture.exists, timeout_s=30)
        print(f"    the banner, as the technologist sees it: {picture.relative_to(self.workdir)}")

    def diagnostics(self) -> None:
        self.portal("engineer", "run-task", "--session", self.sid, "--kind", "run-diagnostics", "--param",
                    "suite=quick", "--param", "seconds=1", "--wait", "60")

    def fetch_study(self) -> None:
        study = self.modality()["studies"][0]
        self.portal("engineer", "run-task", "--session", self.sid, "--kind", "fetch-study", "--param",
                    f"study_uid={study['study_uid']}", "--wait", "120")
        def accepted() -> list[dict[str, Any]]:
            return [u for u in self._uploads() if u["state"] == "accepted"]

        self.wait(f"the upload of the study's {study['files']} images", lambda: len(accepted()) == study["files"],
                  timeout_s=60)
        self.sg("uploads")
        before = pydicom.dcmread(sorted((self.workdir / "modality" / "dicom" / study["study_uid"]).glob("*.dcm"))[0],
                                 stop_before_pixels=True)
        after = pydicom.dcmread(accepted()[0]["path"], stop_before_pixels=True)
        print("    patient attributes of the first image, on the scanner and as the portal received it:")
        for keyword in PATIENT_ATTRIBUTES:
            shown = "(removed)" if keyword not in after else str(after.get(keyword)) or "(emptied)"
            print(f"      {keyword:24} {str(before.get(keyword, '')):40.40} -> {shown}")
        planted = [s["patient_name"] for s in self.modality()["studies"]]
        for upload in accepted():
            data = Path(upload["path"]).read_bytes()
            if any(name.encode() in data for name in planted):
                raise Failed(f"a patient's name is in {upload['name']} at the portal")

    def share_screen(self) -> None:
        if not self.display or shutil.which("x11vnc") is None:
            why = "no X display and no Xvfb" if not self.display else "no x11vnc"
            self.skipped.append(f"the shared screen: {why} here (`make demo` as root installs xvfb and x11vnc)")
            print(f"    skipped: {self.skipped[-1]}")
            return
        sid = self.portal("engineer", "open-session", "--device", DEVICE_ID, *KIM, "--reason",
                          "scan protocol questions", "--level", "limited", "--kind", "application-support").split()[0]
        self.sg("session", "claim", sid, "--level", "limited", "--accept-disclaimer")
        self.authenticate(sid)
        self.portal("engineer", "run-task", "--session", sid, "--kind", "share-screen")

        def waiting() -> list[str]:
            return [t["id"] for t in json.loads(self.sg("task", "list", "--json", quiet=True))
                    if t["kind"] == "share-screen" and t["state"] == "waiting"]

        self.wait("the question at the console", waiting)
        print("    the console asks the technologist: Allow / Decline (here the command that Allow sends)")
        self.sg("task", "confirm", waiting()[0])
        screen = json.loads(self.portal("engineer", "screen", "--session-id", sid, "--wait", "30"))
        self.sg("screen", "list")
        shares = json.loads(self.sg("screen", "list", "--json", quiet=True))
        if len(shares) != 1 or shares[0]["control"]:
            raise Failed(f"expected one view-only share, the agent lists {shares}")
        picture = self.workdir / "screenshots" / "engineer-view.png"
        print(f"  $ vncdo -s {screen['viewer']} -p {screen['password']} capture {picture.name}   (the specialist's "
              "viewer)", flush=True)
        subprocess.run([VNCDO, "-s", screen["viewer"], "-p", screen["password"], "capture", str(picture)],
                       env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, timeout=60, check=True)
        print(f"    what the specialist sees, relayed through the portal: {picture.relative_to(self.workdir)}")
        self.wait("the share's end (the viewer closed)", lambda: not json.loads(
            self.sg("screen", "list", "--json", quiet=True)), timeout_s=30)
        self.portal("engineer", "end-session", "--session", sid, "--summary", "protocol settings explained")

    def virus_patterns(self) -> None:
        patterns = self.workdir / "patterns-2026.12.05.dat"
        patterns.write_bytes(b"demo virus signatures 2026.12.05\n" * 1000)
        self.portal("publish", str(patterns), "--kind", "virus-patterns", "--version", "2026.12.5", "--models",
                    "CT-DEMO", "--notes", "Weekly virus patterns; no restart, no downtime.", "--offer-to", DEVICE_ID)

        def updates() -> list[dict[str, Any]]:
            listed: list[dict[str, Any]] = json.loads(self.sg("update", "list", "--json", quiet=True))
            return listed

        self.wait("the verified offer", lambda: any(u["state"] == "offered" for u in updates()))
        update_id = next(u["id"] for u in updates() if u["state"] == "offered")
        self.sg("update", "show", update_id)
        self.sg("update", "approve", update_id)
        self.wait("the installation", lambda: updates()[0]["state"] in ("installed", "failed"))
        self.sg("update", "list")
        if updates()[0]["state"] != "installed":
            raise Failed("the virus patterns were not installed; `servicegate update list` says why")
        print(f"    installed: {(self.workdir / 'virus-patterns' / 'current').resolve().relative_to(self.workdir)}")

    def end_session(self) -> None:
        long_run = self.portal("engineer", "run-task", "--session", self.sid, "--kind", "run-diagnostics", "--param",
                               "suite=full", "--param", "seconds=600").split()[0]
        self.wait("the long task to run", lambda: any(t["id"] == long_run and t["state"] == "running" for t in
                                                      json.loads(self.sg("task", "list", "--json", quiet=True))))
        if self.own_display and shutil.which("xdotool"):
            print(f"  $ xdotool key ctrl+alt+End   (the technologist presses End session: the console's key, "
                  f"on display {self.display})", flush=True)
            subprocess.run(["xdotool", "key", "ctrl+alt+End"], env={**os.environ, "DISPLAY": self.display},
                           capture_output=True, timeout=30, check=True)
        else:
            print("    (no virtual display to press keys on: the command End session sends)")
            self.sg("kill", "--reason", "patient on the table")
        self.wait("the session's end", lambda: self.session(self.sid)["state"] == "ended", timeout_s=30)
        receipt = self.workdir / "screenshots" / f"receipt-{self.sid}.png"
        self.wait("the receipt on the technologist's screen", receipt.exists, timeout_s=30)
        print(f"    the receipt stays on the technologist's screen: {receipt.relative_to(self.workdir)}")
        self.sg("task", "list")
        self.sg("examinations", "status")
        self.sg("access", "show")
        stopped = next((t for t in json.loads(self.sg("task", "list", "--json", quiet=True)) if t["id"] == long_run),
                       {"state": "not listed"})
        if (stopped["state"], stopped.get("stop_reason")) != ("stopped", "killed"):
            raise Failed(f"the long task is {stopped['state']}, not stopped by the kill switch")
        if self.modality()["blocked"]:
            raise Failed("examinations are still blocked after the kill switch")

    def audit(self) -> None:
        export = self.workdir / "audit-export.csv"
        print(f"  $ servicegate audit export --format csv > {export.name}", flush=True)
        export.write_text(self.sg("audit", "export", "--format", "csv", quiet=True))
        lines = export.read_text().splitlines()
        for line in lines[:1] + [line for line in lines if "session_confirmed" in line or ",kill," in line]:
            print(f"    {line[:160]}")
        print(f"    ... {len(lines) - 1} records in {export.name}")
        kill = max(int(line.split(",")[1]) for line in lines[1:] if ",kill," in line)
        self.wait("the portal's copy of the kill switch's checkpoint", lambda: any(
            int(h["servicegate.head_seq"]) >= kill for h in self.portal_holds()["audit_heads"]), timeout_s=30)
        self.sg("audit", "verify", "--against-portal")
        print(f"    the portal holds the signed head of the log up to the kill switch's record ({kill})")

    # ---- helpers ---------------------------------------------------------------------------------------------------

    def session(self, session_id: str) -> dict[str, Any]:
        listed: list[dict[str, Any]] = json.loads(self.sg("session", "list", "--json", quiet=True))
        return next((s for s in listed if s["id"] == session_id), {"state": "unknown"})

    def _uploads(self) -> list[dict[str, Any]]:
        return [u for u in uploads_of(self.workdir / "portal", DEVICE_ID) if u["session_id"] == self.sid]

    def stop(self) -> None:
        """The consent UI, the agent (SIGTERM, as systemd would), the portal and the display, in reverse order."""
        print("\nStopping the consent UI, the agent (SIGTERM, as systemd would) and the portal.", flush=True)
        for process in reversed(self.processes):
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait(timeout=30)
            if process is self.agent:
                print(f"  agent exited with code {code}")
        for process in self.processes:
            if process.stdout is not None:
                process.stdout.close()

    def where_everything_is(self) -> None:
        w = self.workdir
        shots = sorted(p.name for p in (w / "screenshots").glob("*.png"))
        try:
            held = self.portal_holds()
        except (subprocess.SubprocessError, OSError, ValueError):  # the portal never got that far
            held = {}
        print(f"\nWhere everything is (in {w}):")
        for what, where in (
                ("logs", "  ".join(p.name for p in sorted(w.glob("*.log")))),
                ("screenshots", f"screenshots/ ({', '.join(shots) or 'none'})"),
                ("the audit log", "state/audit/ (servicegate --config agent.toml audit verify); its export: "
                                  "audit-export.csv"),
                ("the portal received", f"portal/ ({held.get('records', 0)} telemetry records, "
                                        f"{len(uploads_of(w / 'portal', DEVICE_ID))} uploads; "
                                        f"servicegate-portal show --device-id {DEVICE_ID} --data-dir portal)"),
                ("the scanner", "modality/ (servicegate-sim-modality --state modality status)"),
                ("the installation", "staging/ (the bundle installed with --root), dist/ (the bundle)"),
                ("the agent's configuration", "agent.toml, state/")):
            print(f"  {what:26} {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description="ServiceGate demo: one service call on loopback, in a folder of its "
                                                 "own (kept).")
    parser.add_argument("--workdir", type=Path, help="use this folder (default: a new temporary one)")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = args.workdir.resolve()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="servicegate-demo-"))
        os.chmod(workdir, 0o755)
    print(f"ServiceGate demo in {workdir}: the vendor's portal, the scanner and its console on this machine, on "
          "loopback only.")
    return walk(Demo(workdir))


def walk(demo: Demo) -> int:
    """Every step in order, then the processes stopped. 0 when each did what it says; 1 naming the step that did
    not (the traceback of an unexpected error in demo-error.log); 3 when a step could not be shown here."""
    try:
        try:
            demo.run()
        finally:
            demo.stop()
    except Exception as exc:  # any failure ends the demo naming its step, never with a bare traceback
        if not isinstance(exc, Failed):
            (demo.workdir / "demo-error.log").write_text("".join(traceback.format_exception(exc)))
        print(f"\nThe demo FAILED at {demo.current}\n  what went wrong: {exc}", file=sys.stderr)
        demo.where_everything_is()
        return 1
    demo.where_everything_is()
    took = time.monotonic() - demo.story_started
    print(f"\nThe story took {took // 60:.0f} min {took % 60:.0f} s after set-up. The folder is kept; "
          f"`rm -r {demo.workdir}` removes it.")
    if demo.skipped:
        for skipped in demo.skipped:
            print(f"NOT SHOWN: {skipped}.", file=sys.stderr)
        return 3
    print("Done: every step did what it says.")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
