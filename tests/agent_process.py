"""A real `servicegate run` in a folder of its own, for tests that need the whole daemon."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent import totp
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

    def give_totp_secret(self) -> None:
        """What enrollment leaves behind for the engineers' one-time passwords, for an agent tested without a
        portal (an enrolled one has it from `servicegate enroll`)."""
        folder = self.state / "portal"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "totp.key").write_text(base64.b32encode(secrets.token_bytes(totp.SECRET_BYTES)).decode())

    def totp_code(self, step_offset: int = 0) -> str:
        """The engineer's one-time password for now (or `step_offset` steps away), from the device's secret."""
        secret = base64.b32decode((self.state / "portal" / "totp.key").read_text().strip())
        return totp.code_at(secret, time.time() + step_offset * totp.STEP_S)

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        if result.returncode != 0:
            raise AssertionError(f"servicegate {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return json.loads(result.stdout)
