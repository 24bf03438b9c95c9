"""The reference portal as a real process for the tests: `servicegate-portal serve` on 127.0.0.1.

`start()` waits until it accepts connections; `restart()` stops it and starts it again on the same ports and
data folder (its state must survive); `relay_port` is its screen relay's (docs/protocol.md, Screen relay). The
commands that work on the data folder (`device add`, `show`, `inbox post`) are run as the real command line too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.tls_server import wait_listening

PORTAL = str(Path(sys.executable).parent / "servicegate-portal")


class PortalProcess:
    def __init__(self, data_dir: Path, *, cert_days: int = 90) -> None:
        self.data_dir = data_dir
        self.cert_days = cert_days
        self.port = 0
        self.relay_port = 0
        self.url = ""
        self.ca_fingerprint = ""
        self.process: subprocess.Popen[str] | None = None

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "ca.pem"

    def start(self, timeout_s: float = 20) -> PortalProcess:
        self.process = subprocess.Popen(
            [PORTAL, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--relay-port", str(self.relay_port), "--cert-days", str(self.cert_days)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        for line in self.process.stdout:
            if found := re.search(r"at (https://[\d.]+:(\d+))", line):
                self.url, self.port = found[1], int(found[2])
            if found := re.search(r"^relay at [\d.]+:(\d+)$", line.strip()):
                self.relay_port = int(found[1])
            if found := re.search(r"fingerprint: ([0-9a-f]{64})", line):
                self.ca_fingerprint = found[1]
                break
            if time.monotonic() > deadline:
                break
        if not self.ca_fingerprint:
            self.stop()
            raise RuntimeError(f"the portal did not start: {self.errors()}")
        if not wait_listening(self.port, max(1.0, deadline - time.monotonic())):
            raise RuntimeError("the portal does not accept connections")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()

    def restart(self) -> PortalProcess:
        self.stop()
        return self.start()

    def errors(self) -> str:
        """What the portal wrote to its standard error (after it stopped)."""
        if self.process is None or self.process.stderr is None or self.process.poll() is None:
            return ""
        return self.process.stderr.read()

    def run(self, *args: str, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
        """`servicegate-portal ARGS --data-dir DIR`, whatever its exit status."""
        return subprocess.run([PORTAL, *args, "--data-dir", str(self.data_dir)], capture_output=True, text=True,
                              timeout=timeout_s)

    def cli(self, *args: str) -> str:
        result = self.run(*args)
        if result.returncode != 0:
            raise RuntimeError(f"servicegate-portal {' '.join(args)}: {result.stderr}")
        return result.stdout

    def add_device(self, device_id: str) -> str:
        """Register `device_id`; its one-time enrollment password."""
        found = re.search(r"password (\S+)", self.cli("device", "add", "--device-id", device_id))
        assert found is not None
        return found[1]

    def show(self, device_id: str) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(self.cli("show", "--device-id", device_id))
        return shown

    def post(self, device_id: str, type: str, body: dict[str, Any]) -> str:
        return self.cli("inbox", "post", "--device-id", device_id, "--type", type, "--body", json.dumps(body)).strip()

    def __enter__(self) -> PortalProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
