"""`make demo`: the whole product on one machine, in a temporary directory, on loopback only.

Each step prints what happens in plain words, runs the real `servicegate` (and `servicegate-portal`) command a site
IT person, technologist or vendor would type, and shows its output. The vendor side is the reference portal
(`servicegate-portal`) on 127.0.0.1, and the scanner is the simulated modality (`servicegate-sim-modality`). Later
issues add their steps (consent UI, screen sharing, updates).

    python scripts/demo.py [--workdir DIR]    # DIR is kept; without it a temporary one is removed
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file

from agent.client import wait_for_agent
from agent.errors import AgentUnreachableError

STEPS = 27
REPO = Path(__file__).resolve().parents[1]
PORTAL = str(Path(sys.executable).parent / "servicegate-portal")
SIM = str(Path(sys.executable).parent / "servicegate-sim-modality")
VNCDO = str(Path(sys.executable).parent / "vncdo")  # the engineer's VNC viewer (vncdotool, a test dependency)
DEVICE_ID = "CT-DEMO-01"
DANA = ("--engineer-id", "E-1001", "--name", "Dana Example", "--company", "Vendor Service")


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "agent.toml"
        self.socket = workdir / "run" / "control.sock"
        self.step_no = 0
        self.used_codes: set[str] = set()
        self.display = ""  # the console's X display: this one, or a virtual one the demo starts

    def step(self, text: str) -> None:
        self.step_no += 1
        print(f"\n[{self.step_no}/{STEPS}] {text}", flush=True)

    def sg(self, *args: str, check: bool = True, quiet: bool = False) -> str:
        """A `servicegate` command; `quiet`: the demo only looks at its answer."""
        command = [sys.executable, "-m", "agent.cli", "--config", str(self.config), *args]
        if not quiet:
            print(f"  $ servicegate {shlex.join(args)}", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        for line in [] if quiet else (result.stdout + result.stderr).rstrip().splitlines():
            print(f"    {line}")
        if check and result.returncode != 0:
            raise SystemExit(f"demo: `servicegate {shlex.join(args)}` failed with exit code {result.returncode}")
        return result.stdout

    def portal(self, *args: str) -> str:
        """A `servicegate-portal` command on the portal's data folder, as the vendor would type it."""
        print(f"  $ servicegate-portal {shlex.join(args)}", flush=True)
        result = subprocess.run([PORTAL, *args, "--data-dir", str(self.workdir / "portal")], capture_output=True,
                                text=True, timeout=60)
        for line in (result.stdout + result.stderr).rstrip().splitlines()[:12]:
            print(f"    {line}")
        if result.returncode != 0:
            raise SystemExit(f"demo: `servicegate-portal {shlex.join(args)}` failed")
        return result.stdout

    def start_portal(self) -> tuple[subprocess.Popen[str], str, str]:
        """The vendor's reference portal on 127.0.0.1 (any free port): its URL and CA fingerprint."""
        print("  $ servicegate-portal serve --port 0", flush=True)
        portal = subprocess.Popen([PORTAL, "serve", "--data-dir", str(self.workdir / "portal"), "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=(self.workdir / "portal.log").open("wb"), text=True)
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
            raise SystemExit(f"demo: the portal did not start; see {self.workdir / 'portal.log'}")
        host, port = url.removeprefix("https://").split(":")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return portal, url, fingerprint
            except OSError:
                time.sleep(0.05)
        raise SystemExit("demo: the portal does not accept connections")

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

    def start_agent(self) -> subprocess.Popen[bytes]:
        log = (self.workdir / "agent.log").open("wb")
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "--config", str(self.config), "run"],
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            if wait_for_agent(self.socket, alive=lambda: agent.poll() is None):
                return agent
        except AgentUnreachableError:
            agent.kill()
            raise SystemExit("demo: the agent did not answer within 30 s") from None
        raise SystemExit(f"demo: the agent stopped at start; see {self.workdir / 'agent.log'}")

    def start_console_display(self) -> list[subprocess.Popen[bytes]]:
        """The console's X display, which the consent UI shows on and the screen is shared from: this one when there
        is one (DISPLAY), else a virtual one (Xvfb, with openbox) when Xvfb is installed; else none."""
        if os.environ.get("DISPLAY"):
            self.display = os.environ["DISPLAY"]
            return []
        if shutil.which("Xvfb") is None:
            return []
        read, write = os.pipe()
        log = (self.workdir / "xvfb.log").open("wb")
        print("  $ Xvfb -screen 0 1280x800x24 -nolisten tcp   (the console's display: no screen here)", flush=True)
        started = [subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten",
                                     "tcp"], pass_fds=(write,), stdout=log, stderr=subprocess.STDOUT)]
        os.close(write)
        with os.fdopen(read) as displayfd:
            number = displayfd.readline().strip()  # written once it accepts connections
        if not number.isdigit():
            raise SystemExit(f"demo: Xvfb did not start; see {self.workdir / 'xvfb.log'}")
        self.display = f":{number}"
        if shutil.which("openbox"):
            started.append(subprocess.Popen(["openbox"], env={**os.environ, "DISPLAY": self.display}, stdout=log,
                                            stderr=subprocess.STDOUT))
        return started

    def start_ui(self) -> subprocess.Popen[bytes]:
        """The technologist's consent UI: real windows on the console's display, else offscreen; either way the
        banner and each receipt are saved as PNG in `screenshots/`."""
        env = dict(os.environ)
        if self.display:
            env.update(DISPLAY=self.display, QT_QPA_PLATFORM="xcb")
        else:
            env["QT_QPA_PLATFORM"] = "offscreen"
        where = f"on display {self.display}" if self.display else "offscreen (no display here)"
        print(f"  $ servicegate ui      ({where}; screenshots in {self.workdir / 'screenshots'})", flush=True)
        log = (self.workdir / "ui.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "consent_ui", "--socket", str(self.socket), "--screenshots",
                                 str(self.workdir / "screenshots")], env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait(self, what: str, condition: Callable[[], object], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.3)
        raise SystemExit(f"demo: {what} did not happen within {timeout_s:.0f} s; see agent.log and portal.log")

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

    def anonymize(self) -> None:
        """De-identify a CT image (pydicom's bundled sample) the way anything bound for the portal will be."""
        self.step("A CT image is de-identified before it could leave: patient attributes before and after.")
        source = Path(get_testdata_file("CT_small.dcm", download=False) or "")
        out = self.workdir / "deidentified"
        self.sg("anonymize", str(source), "--out", str(out), "--report", str(self.workdir / "anonymize.json"))
        after = next(out.rglob("*.dcm"))
        before_ds, after_ds = pydicom.dcmread(source), pydicom.dcmread(after)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "InstitutionName"):
            print(f"    {keyword:18} {str(before_ds.get(keyword, '')):52.52} -> {str(after_ds.get(keyword, ''))}")
        print(f"    written as {after.relative_to(self.workdir)} (named by the new UIDs, not the input's name)")

    def portal_holds(self) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(subprocess.run(
            [PORTAL, "show", "--device-id", DEVICE_ID, "--data-dir", str(self.workdir / "portal")],
            capture_output=True, text=True, timeout=60, check=True).stdout)
        return shown

    def telemetry(self) -> None:
        self.step("Telemetry: samples and a threshold alert reach the portal (OTLP over mutual TLS).")
        self.wait("a sample and an alert at the portal", lambda: {"alert", "metric"} <= set(
            self.portal_holds()["kinds"]))
        self.sg("telemetry", "status")
        held = self.portal_holds()
        print(f"    the portal holds {held['records']} records from {DEVICE_ID}: {held['kinds']}")
        for alert in held["alerts"]:
            print(f"    alert: {alert['body']}")

    def install_bundle(self) -> None:
        """The installer on the offline bundle `make dist` builds, into a staging root: what site IT does first."""
        self.step("Site IT installs the vendor's offline bundle (every wheel, the units, an SBOM) with one command; "
                  "here into a staging folder (--root), on a scanner as root. Installing again changes nothing.")
        print("  $ make dist", flush=True)
        built = subprocess.run([sys.executable, str(REPO / "scripts" / "dist.py"), "--out", str(self.workdir / "dist")],
                               capture_output=True, text=True, timeout=900)
        if built.returncode != 0:
            raise SystemExit(f"demo: make dist failed:\n{built.stdout}{built.stderr}")
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
                raise SystemExit("demo: servicegate-install install failed")

    def virus_patterns(self) -> None:
        """An update from the service centre: published in the portal's TUF repository, offered, verified by the
        device against the vendor's root from its enrollment, approved by the technologist, installed by a task."""
        self.step("The service centre offers new virus patterns: the device checks them with TUF (signed by the "
                  "vendor's keys, not replayed, for this model, newer), and the technologist approves them.")
        patterns = self.workdir / "patterns-2026.12.05.dat"
        patterns.write_bytes(b"demo virus signatures 2026.12.05\n" * 1000)
        self.portal("publish", str(patterns), "--kind", "virus-patterns", "--version", "2026.12.5", "--models",
                    "CT-DEMO", "--notes", "Weekly virus patterns; no restart, no downtime.", "--offer-to", DEVICE_ID)

        def offered() -> list[dict[str, Any]]:
            return [u for u in json.loads(self.sg("update", "list", "--json", quiet=True)) if u["state"] == "offered"]

        self.wait("the verified offer", offered)
        update_id = offered()[0]["id"]
        self.sg("update", "show", update_id)
        self.sg("update", "approve", update_id)
        self.wait("the installation", lambda: json.loads(self.sg("update", "list", "--json", quiet=True))[0][
            "state"] in ("installed", "failed"))
        self.sg("update", "list")
        print(f"    installed: {(self.workdir / 'virus-patterns' / 'current').resolve()}")

    def share_screen(self) -> None:
        self.step("An application specialist calls about a scan protocol and wants to see the console: an "
                  "application-support session at LIMITED access, so the specialist only watches. The technologist "
                  "types its ID in, accepts the privacy disclaimer, and confirms the screen share.")
        if not self.display or shutil.which("x11vnc") is None:
            print("    skipped: no X display or no x11vnc here (`make demo` as root installs xvfb and x11vnc)")
            return
        sid = self.portal("engineer", "open-session", "--device", DEVICE_ID, "--engineer-id", "E-3003", "--name",
                          "Kim Applications", "--company", "Vendor Applications", "--reason", "scan protocol questions",
                          "--level", "limited", "--kind", "application-support").split()[0]
        self.sg("session", "claim", sid, "--level", "limited", "--accept-disclaimer")
        self.authenticate(sid)
        self.portal("engineer", "run-task", "--session", sid, "--kind", "share-screen")
        def waiting() -> list[str]:
            return [t["id"] for t in json.loads(self.sg("task", "list", "--json", quiet=True))
                    if t["kind"] == "share-screen" and t["state"] == "waiting"]

        self.wait("the question at the console", waiting)
        self.sg("task", "confirm", waiting()[0])
        screen = json.loads(self.portal("engineer", "screen", "--session-id", sid, "--wait", "30"))
        self.sg("screen", "list")
        picture = self.workdir / "screenshots" / "engineer-view.png"
        print(f"  $ vncdo -s {screen['viewer']} -p {screen['password']} capture {picture.name}   (the specialist's "
              "viewer)", flush=True)
        subprocess.run([VNCDO, "-s", screen["viewer"], "-p", screen["password"], "capture", str(picture)],
                       env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, timeout=60, check=True)
        print(f"    what the specialist sees, relayed through the portal: {picture.relative_to(self.workdir)}")
        self.wait("the share's end (the viewer closed)", lambda: not json.loads(
            self.sg("screen", "list", "--json", quiet=True)), timeout_s=30)
        self.portal("engineer", "end-session", "--session", sid, "--summary", "protocol settings explained")

    def run(self) -> None:
        self.install_bundle()
        self.step("The vendor's portal starts (the reference portal, on 127.0.0.1) with its own CA.")
        portal, url, fingerprint = self.start_portal()
        agent: subprocess.Popen[bytes] | None = None
        ui: subprocess.Popen[bytes] | None = None
        console = self.start_console_display()
        try:
            self.step("The vendor registers the device and gives site IT a one-time password and the CA fingerprint.")
            otp = re.search(r"password (\S+)", self.portal("device", "add", "--device-id", DEVICE_ID))
            assert otp is not None
            self.step("Site IT enrolls the device: the CA is checked against the fingerprint, the key stays here.")
            self.start_modality()
            self.write_config()
            self.sg("enroll", "--portal", url, "--ca-fingerprint", fingerprint, "--otp", otp[1],
                    "--device-id", DEVICE_ID)
            self.step("Start the agent in this folder (no root; it only connects out, nothing listens).")
            agent = self.start_agent()
            print(f"  agent running, pid {agent.pid}, control socket {self.socket}")
            self.wait("the link to the portal", lambda: '"connected"' in self.sg("status", "--json", quiet=True))
            self.step("The technologist's consent UI starts in the console's desktop session.")
            ui = self.start_ui()
            self.step("A new device starts with no remote access; it is connected to the portal.")
            self.sg("status")
            self.step("The technologist grants limited access for 2 hours.")
            self.sg("access", "set", "limited", "--for", "2h")
            self.step("The technologist requests service: a few words and how urgent. A technical system report (no "
                      "patient data) goes with it; the service centre's case number comes back.")
            self.sg("request-service", "gantry error 4711 after the morning warm-up", "--urgency", "normal")
            case = json.loads(self.sg("service-requests", "--json", quiet=True))[-1]["case_id"]
            self.step("An engineer takes the case: a limited service session at the portal, asking the device "
                      "directly; the standing grant admits it.")
            sid = self.portal("engineer", "open-session", "--device", DEVICE_ID, *DANA, "--reason",
                              "gantry error 4711", "--level", "limited", "--case-id", case, "--request").split()[0]
            self.wait("the session request", lambda: sid in self.sg("session", "list", quiet=True))
            self.sg("session", "list")
            self.step("The engineer authenticates at the system with their time-based one-time password, which the "
                      "portal relays.")
            self.authenticate(sid)
            self.sg("status")
            self.step("The engineer finishes and ends the session with a summary the console shows.")
            self.portal("engineer", "end-session", "--session", sid, "--summary",
                        "error log collected; fan replacement ordered")
            self.sg("session", "list")
            self.step("The technologist sets no access: remote access only case by case from now on.")
            self.sg("access", "set", "no-access")
            self.share_screen()
            self.step("An engineer opens a FULL session and reads its ID out over the phone.")
            sid = self.portal("engineer", "open-session", "--device", DEVICE_ID, "--engineer-id", "E-2002", "--name",
                              "Sam Sample", "--company", "Vendor Service", "--reason", "detector calibration",
                              "--level", "full").split()[0]
            self.step("The technologist types the ID in, reads who asks and why, accepts the privacy disclaimer and "
                      "grants FULL for this session alone.")
            self.sg("session", "claim", f"{sid[:4]} {sid[4:]}", "--level", "full", "--accept-disclaimer")
            self.authenticate(sid)
            self.sg("status")
            self.step("While the FULL session is active, examinations are blocked: a lease the agent renews, so a "
                      "crashed agent never leaves the scanner blocked.")
            self.wait("the examination block", lambda: self.modality()["blocked"], timeout_s=20)
            self.sg("examinations", "status")
            banner = self.workdir / "screenshots" / f"banner-{sid}-0.png"
            self.wait("the session banner on the technologist's screen", banner.exists, timeout_s=30)
            print(f"    the banner is on the technologist's screen: {banner.relative_to(self.workdir)}")
            self.step("The engineer runs the modality's diagnostics, a task of the device's catalog (never a shell); "
                      "its output is scrubbed and reported to the portal.")
            self.portal("engineer", "run-task", "--session", sid, "--kind", "run-diagnostics", "--param",
                        "suite=quick", "--param", "seconds=1", "--wait", "60")
            self.step("The engineer fetches a study from the modality's DICOM store: de-identified on the device, "
                      "uploaded, checked again at the portal.")
            study_uid = self.modality()["studies"][0]["study_uid"]
            self.portal("engineer", "run-task", "--session", sid, "--kind", "fetch-study", "--param",
                        f"study_uid={study_uid}", "--wait", "120")
            self.wait("the study's upload", lambda: all(e["state"] == "accepted" for e in json.loads(
                self.sg("uploads", "--json", quiet=True))), timeout_s=60)
            self.sg("uploads")
            self.step("The technologist sends the engineer a CT image: de-identified here, uploaded resumably, "
                      "checked again at the portal.")
            study = self.workdir / "study"
            study.mkdir(exist_ok=True)
            (study / "ct.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm", download=False) or "").read_bytes())
            self.sg("upload", str(study), "--case", "CASE-4711", "--wait", "40")
            self.virus_patterns()
            self.step("A long diagnostics run is going when a patient arrives: the technologist uses the kill switch. "
                      "The task is stopped, its restore runs, the block is released, the session ends.")
            long_run = self.portal("engineer", "run-task", "--session", sid, "--kind", "run-diagnostics", "--param",
                                   "suite=full", "--param", "seconds=600").split()[0]
            self.wait("the long task to run", lambda: any(t["id"] == long_run and t["state"] == "running" for t in
                                                          json.loads(self.sg("task", "list", "--json", quiet=True))))
            self.sg("kill", "--reason", "patient on the table")
            receipt = self.workdir / "screenshots" / f"receipt-{sid}.png"
            self.wait("the receipt on the technologist's screen", receipt.exists, timeout_s=30)
            print(f"    the receipt stays on the technologist's screen: {receipt.relative_to(self.workdir)}")
            self.sg("task", "list")
            self.sg("examinations", "status")
            self.sg("access", "show")
            self.step("Who accessed this system, when, at which level, for what: the audit export.")
            self.sg("audit", "export", "--format", "csv")
            self.step("The audit log's hash chain and signed checkpoints are intact.")
            self.sg("audit", "verify")
            self.anonymize()
            self.telemetry()
        finally:
            self.step("Stop the consent UI, the agent cleanly (SIGTERM, as systemd would) and the portal.")
            if ui is not None:
                ui.terminate()
                ui.wait(timeout=30)
            if agent is not None:
                agent.send_signal(signal.SIGTERM)
                try:
                    print(f"  agent exited with code {agent.wait(timeout=30)}")
                except subprocess.TimeoutExpired:
                    agent.kill()
                    print("  agent did not stop in 30 s and was killed")
            portal.terminate()
            portal.wait(timeout=30)
            for process in reversed(console):
                process.terminate()
                process.wait(timeout=30)
            if portal.stdout is not None:
                portal.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="ServiceGate demo on loopback, in a temporary folder.")
    parser.add_argument("--workdir", type=Path, help="keep everything in this folder (default: a temporary one)")
    args = parser.parse_args()
    print("ServiceGate demo: the portal, enrollment, the agent, access levels, sessions, the kill switch, the audit "
          "log, de-identification, telemetry.")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        Demo(args.workdir.resolve()).run()
        print(f"\nDone. Everything is kept in {args.workdir}.")
    else:
        with tempfile.TemporaryDirectory(prefix="servicegate-demo-") as tmp:
            os.chmod(tmp, 0o755)
            Demo(Path(tmp)).run()
        print("\nDone. The temporary folder was removed.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
