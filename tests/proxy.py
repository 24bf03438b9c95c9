"""A real site proxy on loopback for the tests: Debian's tinyproxy, in the foreground, with a configuration of its
own in a temporary folder. HTTPS goes through it as HTTP CONNECT tunnels; its log shows which were opened, so a test
can tell that the agent went through the proxy and not around it.

No `ConnectPort` line: with none, tinyproxy tunnels to any port (with one, only to those listed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.tls_server import wait_listening

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"

needs_tinyproxy = pytest.mark.skipif(
    not os.path.exists(TINYPROXY) and os.environ.get("CI") != "true",
    reason="tinyproxy is not installed (Debian package tinyproxy; `make test` installs it as root)")


class Proxy:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log = directory / "tinyproxy.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        self.directory.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        conf = self.directory / "tinyproxy.conf"
        conf.write_text(f"Port {self.port}\nListen 127.0.0.1\nBind 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\n"
                        f"LogFile \"{self.log}\"\nLogLevel Connect\nPidFile \"{self.directory / 'tinyproxy.pid'}\"\n"
                        "MaxClients 20\n")
        self.process = subprocess.Popen([TINYPROXY, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        if not wait_listening(self.port):
            self.stop()
            raise RuntimeError("tinyproxy did not start")
        return self

    def tunnels(self) -> list[str]:
        """The CONNECT targets the proxy opened, as host:port."""
        if not self.log.exists():
            return []
        return [line.split(": CONNECT ", 1)[1].split()[0]
                for line in self.log.read_text(errors="replace").splitlines() if ": CONNECT " in line]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
