"""A real `servicegate run` in a folder of its own, for tests that need the whole daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.client import wait_for_agent
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
        process = self.process
        try:
            if wait_for_agent(self.socket, alive=lambda: process.poll() is None):
                return self
        except AgentUnreachableError:
            raise RuntimeError(f"agent did not answer within 30 s:\n{self.log.read_text()}") from None
        raise RuntimeError(f"agent exited with {process.returncode}:\n{self.log.read_text()}")

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
