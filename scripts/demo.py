"""`make demo`: the whole product on one machine, in a temporary directory, on loopback only.

Each step prints what happens in plain words, runs the real `servicegate` command a site IT
person or technologist would type, and shows its output. Later issues add their steps (portal,
telemetry, consent UI, de-identified uploads, screen sharing, updates).

    python scripts/demo.py [--workdir DIR]    # DIR is kept; without it a temporary one is removed
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from agent.client import wait_for_agent
from agent.errors import AgentUnreachableError

# The telemetry receiver and its certificates are the test suite's (tests/ is not an installed package):
# the reference portal of the connection issue will take their place.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.otlp_receiver import Receiver  # noqa: E402
from tests.pki import make_pki  # noqa: E402

STEPS = 15


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "agent.toml"
        self.socket = workdir / "run" / "control.sock"
        self.step_no = 0

    def step(self, text: str) -> None:
        self.step_no += 1
        print(f"\n[{self.step_no}/{STEPS}] {text}", flush=True)

    def sg(self, *args: str, check: bool = True) -> str:
        command = [sys.executable, "-m", "agent.cli", "--config", str(self.config), *args]
        print(f"  $ servicegate {shlex.join(args)}", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        for line in (result.stdout + result.stderr).rstrip().splitlines():
            print(f"    {line}")
        if check and result.returncode != 0:
            raise SystemExit(f"demo: `servicegate {shlex.join(args)}` failed with exit code {result.returncode}")
        return result.stdout

    def start_receiver(self) -> Receiver:
        """The service centre's telemetry receiver on loopback: HTTPS, client certificate required. (The test
        suite's OTLP receiver, until the reference portal of the connection issue receives telemetry.)"""
        self.pki = make_pki(self.workdir / "pki", device_id="CT-DEMO-01")
        return Receiver(self.pki).start()

    def start_agent(self, receiver: Receiver) -> subprocess.Popen[bytes]:
        rules = self.workdir / "thresholds.toml"
        rules.write_text('[[rule]]\nname = "demo-uptime"\nmetric = "system.uptime"\ncomparison = ">"\nlimit = 60\n'
                         'severity = "info"\n')  # holds at once on any machine up for a minute: an alert to show
        self.config.write_text(
            "# Written by make demo: everything lives in this folder.\n"
            f'[paths]\nstate_dir = "{self.workdir / "state"}"\ncontrol_socket = "{self.socket}"\n'
            f'[telemetry]\nendpoint = "{receiver.url}"\nca_file = "{self.pki.ca_cert}"\n'
            f'client_cert = "{self.pki.client_cert}"\nclient_key = "{self.pki.client_key}"\n'
            f'thresholds = "{rules}"\ncollect_s = 5\npush_s = 5\n'
        )
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

    def session_id(self, output: str) -> str:
        # "Session 12345678: ..." is the first line the CLI prints for a session
        return output.split()[1].rstrip(":")

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

    def telemetry(self, receiver: Receiver) -> None:
        self.step("Telemetry: a sample and a threshold alert reach the service centre (OTLP over mutual TLS).")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not {"alert", "metric"} <= receiver.kinds():
            time.sleep(0.2)
        arrivals = [{"path": a.path, "records": a.records, "document": a.document} for a in receiver.accepted]
        (self.workdir / "receiver.json").write_text(json.dumps(arrivals, indent=1))
        self.sg("telemetry", "status")
        for arrival in receiver.accepted:
            for record in arrival.document.get("resourceLogs", [{}])[0].get("scopeLogs", [{}])[0].get("logRecords", []):
                print(f"    receiver got: {record['body']['stringValue']}")
        print(f"    receiver got {sum(len(a.records) for a in receiver.accepted)} records: "
              f"{', '.join(sorted(receiver.kinds()))}")
        if not {"alert", "metric"} <= receiver.kinds():
            raise SystemExit("demo: no telemetry arrived within 60 s; see agent.log")

    def run(self) -> None:
        self.step("Start the agent in a temporary folder (no root, nothing listens on the network).")
        receiver = self.start_receiver()
        agent = self.start_agent(receiver)
        print(f"  agent running, pid {agent.pid}, control socket {self.socket}; telemetry receiver {receiver.url}")
        try:
            self.step("A new device starts with no remote access.")
            self.sg("status")
            self.step("The technologist grants limited access for 2 hours.")
            self.sg("access", "set", "limited", "--for", "2h")
            self.step("An engineer asks for a limited service session; the standing grant admits it.")
            sid = self.session_id(self.sg("session", "request", "--engineer-id", "E-1001", "--name", "Dana Example",
                                          "--company", "Vendor Service", "--reason", "gantry error 4711"))
            self.step("The engineer authenticates (their one-time password; the portal issue makes this real).")
            self.sg("session", "authenticate", sid)
            self.sg("status")
            self.step("The engineer finishes and ends the session.")
            self.sg("session", "end", sid, "--reason", "error log collected")
            self.step("The technologist sets no access: remote access only case by case from now on.")
            self.sg("access", "set", "no-access")
            self.step("An engineer asks for FULL access; under no access it waits for the console.")
            sid = self.session_id(self.sg("session", "request", "--engineer-id", "E-2002", "--name", "Sam Sample",
                                          "--reason", "detector calibration", "--level", "full"))
            self.step("The technologist reads who asks and why, accepts the privacy disclaimer, grants FULL "
                      "for this session alone.")
            self.sg("session", "confirm", sid, "--level", "full", "--accept-disclaimer")
            self.sg("session", "authenticate", sid)
            self.sg("status")
            self.step("A patient arrives: the technologist uses the kill switch.")
            self.sg("kill", "--reason", "patient on the table")
            self.sg("access", "show")
            self.step("Who accessed this system, when, at which level, for what: the audit export.")
            self.sg("audit", "export", "--format", "csv")
            self.step("The audit log's hash chain and signed checkpoints are intact.")
            self.sg("audit", "verify")
            self.anonymize()
            self.telemetry(receiver)
        finally:
            self.step("Stop the agent cleanly (SIGTERM), as systemd would.")
            agent.send_signal(signal.SIGTERM)
            try:
                print(f"  agent exited with code {agent.wait(timeout=30)}")
            except subprocess.TimeoutExpired:
                agent.kill()
                print("  agent did not stop in 30 s and was killed")
            receiver.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="ServiceGate demo on loopback, in a temporary folder.")
    parser.add_argument("--workdir", type=Path, help="keep everything in this folder (default: a temporary one)")
    args = parser.parse_args()
    print("ServiceGate demo: the agent, access levels, a session, the kill switch, the audit log, de-identification, "
          "telemetry.")
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
