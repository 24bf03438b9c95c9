"""A real `servicegate run` in a folder of its own, for tests that need the whole daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.client import Client
from agent.errors import AgentUnreachableError


class AgentProcess:
    def __init__(self, root: Path, extra_config: str = "", env: dict[str, str] | None = None) -> None:
        self.root = root
        self.config = root / "agent.toml"
        self.socket = root / "run" / "control.sock"
        self.state = root / "state"
        self.log = root / "agent.log"
        self.env = {**os.environ, **(env or {})}
        self.config.write_text(f'[paths]\nstate_dir = "{self.state}"\ncontrol_socket = "{self.socket}"\n'
                               + extra_config)
        self.config.chmod(0o644)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "agent.cli", "--config", str(self.config), "run"]

    def start(self) -> AgentProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=log, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"agent exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with Client(self.socket, timeout_s=2) as client:
                    client.connect()
                return self
            except AgentUnreachableError:
                time.sleep(0.05)  # waiting for a real process to come up, not for a timeout under test
        raise RuntimeError(f"agent did not answer within 30 s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=60)

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        if result.returncode != 0:
            raise AssertionError(f"servicegate {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return json.loads(result.stdout)
