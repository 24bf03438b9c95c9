"""Roles on the control API: who may use which operation, from peer credentials and (as root) real
users and groups created for the test."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agent
from agent.client import Client
from agent.errors import PermissionDeniedError
from agent.protocol import Role
from agent.roles import RoleMap
from tests.control_server import RunningServer, own_role_map


class FixedRoles(RoleMap):
    def __init__(self, roles: frozenset[Role]) -> None:
        super().__init__("sg-console", "sg-modality", "sg-viewer", frozenset())
        self.roles = roles

    def roles_for(self, uid: int, gid: int) -> frozenset[Role]:
        return self.roles


# -- roles from a role map -------------------------------------------------------------------------


def test_denied_without_the_role(start: Callable[..., RunningServer]) -> None:
    server = start(role_map=FixedRoles(frozenset({Role.VIEWER})))
    with Client(server.path) as client:
        assert client.connect()["roles"] == ["viewer"]
        assert client.call("status")["op"] == "status"
        with pytest.raises(PermissionDeniedError, match=r"may not use `kill`: it needs the console role; "
                                                        r"ask site IT to add you to group 'sg-console'"):
            client.call("kill")
        with pytest.raises(PermissionDeniedError, match="only root or the agent's own service user"):
            client.call("session_request")
    assert server.denied == [(pwd.getpwuid(os.getuid()).pw_name, "kill"),
                             (pwd.getpwuid(os.getuid()).pw_name, "session_request")]
    nobody = start(role_map=FixedRoles(frozenset()), path=server.path.parent / "other.sock")
    with Client(nobody.path) as client:
        assert client.connect()["roles"] == []
        with pytest.raises(PermissionDeniedError, match="'sg-viewer' \\(or 'sg-console'\\)"):
            client.watch()


def test_admin_uids_and_missing_groups() -> None:
    role_map = own_role_map()
    assert role_map.roles_for(0, 0) == {Role.ADMIN}
    assert role_map.roles_for(os.getuid(), os.getgid()) >= {Role.ADMIN}
    unknown = next(uid for uid in range(3_999_999_000, 4_000_000_000) if not _has_passwd(uid))
    assert RoleMap("root", "root", "root", frozenset()).roles_for(unknown, 0) == frozenset()
    assert RoleMap("root", "root", "root", frozenset()).caller(1, unknown, 0).user == f"uid:{unknown}"


def _has_passwd(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


# -- real users and groups (as root) ---------------------------------------------------------------


class Accounts:
    """Real groups and users, removed again at teardown."""

    def __init__(self) -> None:
        self.tag = tag = secrets.token_hex(3)
        self.console, self.modality, self.viewer = f"sgc{tag}", f"sgm{tag}", f"sgv{tag}"
        self.groups: list[str] = []
        self.users: list[str] = []
        self.user: dict[str, pwd.struct_passwd] = {}

    def create(self) -> None:
        tag = self.tag
        for group in (self.console, self.modality, self.viewer):
            subprocess.run(["groupadd", group], check=True, capture_output=True)
            self.groups.append(group)
        for kind, options in (("console", ["-G", self.console]), ("primary", ["-g", self.console]),
                              ("modality", ["-G", self.modality]), ("viewer", ["-G", self.viewer]),
                              ("none", [])):
            name = f"sgu{kind[:3]}{tag}"
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", *options, name],
                           check=True, capture_output=True)
            self.users.append(name)
            self.user[kind] = pwd.getpwnam(name)

    def role_map(self) -> RoleMap:
        return RoleMap(self.console, self.modality, self.viewer, frozenset())

    def remove(self) -> None:
        for name in self.users:
            subprocess.run(["userdel", name], check=False, capture_output=True)
        for group in self.groups:
            subprocess.run(["groupdel", group], check=False, capture_output=True)


@pytest.fixture
def accounts() -> Iterator[Accounts]:
    created = Accounts()
    try:
        created.create()
        yield created
    finally:
        created.remove()


@pytest.mark.needs_root
def test_roles_from_real_groups(accounts: Accounts) -> None:
    role_map = accounts.role_map()
    expected = {"console": {Role.CONSOLE}, "primary": {Role.CONSOLE}, "modality": {Role.MODALITY},
                "viewer": {Role.VIEWER}, "none": set()}
    for kind, roles in expected.items():
        entry = accounts.user[kind]
        assert role_map.roles_for(entry.pw_uid, entry.pw_gid) == roles, kind
        assert role_map.caller(7, entry.pw_uid, entry.pw_gid).user == entry.pw_name
    console = accounts.user["console"]
    missing = RoleMap("sg-none-1", "sg-none-2", "sg-none-3", frozenset())
    assert missing.roles_for(console.pw_uid, console.pw_gid) == frozenset()
    assert RoleMap(accounts.console, "", "", frozenset({console.pw_uid})).roles_for(
        console.pw_uid, console.pw_gid) == {Role.ADMIN, Role.CONSOLE}


CLIENT_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from agent.client import Client
from agent.errors import ServiceGateError
out = {}
with Client(Path(sys.argv[2]), timeout_s=10) as client:
    try:
        out["hello"] = client.connect()
        out["result"] = client.call(sys.argv[3])
    except ServiceGateError as exc:
        out["error"] = [type(exc).__name__, exc.code, str(exc), int(exc.exit_code)]
sys.stdout.write(json.dumps(out))
"""


def run_as(entry: pwd.struct_passwd, socket_path: Path, op: str, workdir: Path) -> dict[str, Any]:
    """Run a client in a process of that user: only the client's own modules are on its path."""
    lib = workdir / "lib"
    if not lib.exists():
        (lib / "agent").mkdir(parents=True)
        for name in ("__init__.py", "protocol.py", "errors.py", "client.py"):
            shutil.copy(Path(agent.__file__).parent / name, lib / "agent" / name)
        for path in (lib, *lib.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    last_error = ""
    for python in _interpreters():
        try:
            done = subprocess.run([python, "-I", "-c", CLIENT_SCRIPT, str(lib), str(socket_path), op],
                                  user=entry.pw_uid, group=entry.pw_gid, extra_groups=groups, cwd=workdir,
                                  env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
                                  capture_output=True, text=True, timeout=60, check=False)
        except PermissionError as exc:  # that user may not execute this interpreter
            last_error = str(exc)
            continue
        if done.returncode == 0:
            result: dict[str, Any] = json.loads(done.stdout)
            return result
        last_error = done.stderr
    raise AssertionError(f"no Python interpreter ran the client as {entry.pw_name}: {last_error}")


def _interpreters() -> list[str]:
    # The venv's interpreter may live under /root (0700); the system one is the fallback.
    found = [sys.executable, os.path.realpath(sys.executable), getattr(sys, "_base_executable", sys.executable),
             shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "/usr/bin/python3"]
    return list(dict.fromkeys(found))


@pytest.mark.needs_root
def test_denied_and_allowed_for_real_users(accounts: Accounts, start: Callable[..., RunningServer],
                                           socket_dir: Path) -> None:
    server = start(role_map=accounts.role_map())
    viewer = accounts.user["viewer"]
    out = run_as(viewer, server.path, "kill", socket_dir)
    assert out["hello"]["user"] == viewer.pw_name
    assert out["hello"]["roles"] == ["viewer"]
    kind, code, message, exit_code = out["error"]
    assert (kind, code, exit_code) == ("PermissionDeniedError", "permission_denied", 5)
    assert f"user '{viewer.pw_name}' may not use `kill`: it needs the console role" in message
    assert f"ask site IT to add you to group '{accounts.console}'" in message
    assert server.denied == [(viewer.pw_name, "kill")]

    for kind_of_user in ("console", "primary"):
        entry = accounts.user[kind_of_user]
        out = run_as(entry, server.path, "kill", socket_dir)
        assert out["hello"]["roles"] == ["console"]
        assert out["result"] == {"op": "kill", "args": {}, "user": entry.pw_name}

    modality = accounts.user["modality"]
    assert run_as(modality, server.path, "record_event", socket_dir)["result"]["user"] == modality.pw_name
    out = run_as(modality, server.path, "status", socket_dir)
    assert out["error"][1] == "permission_denied"
    assert f"'{accounts.viewer}'" in out["error"][2]

    nobody = accounts.user["none"]
    out = run_as(nobody, server.path, "session_list", socket_dir)
    assert out["hello"]["roles"] == []
    assert out["error"][1] == "permission_denied"
    assert server.denied[1:] == [(modality.pw_name, "status"), (nobody.pw_name, "session_list")]


@pytest.mark.needs_root
def test_a_socket_or_folder_that_refuses_the_user_is_permission_denied(
        accounts: Accounts, start: Callable[..., RunningServer], socket_dir: Path) -> None:
    # EACCES from connect() means the agent may well be running but will not talk to this user: exit 5
    # and the group to ask for, not exit 4 and "is the agent running?". Root ignores file modes, so
    # the client runs as a real user without privileges.
    server = start(role_map=accounts.role_map())
    user = accounts.user["none"]
    for path, mode, restore in ((server.path, 0o000, 0o666), (server.path.parent, 0o700, 0o755)):
        path.chmod(mode)
        try:
            out = run_as(user, server.path, "status", socket_dir)
        finally:
            path.chmod(restore)
        kind, code, message, exit_code = out["error"]
        assert (kind, code, exit_code) == ("PermissionDeniedError", "permission_denied", 5), message
        assert str(server.path) in message
        assert "Ask site IT to add you to the ServiceGate console or viewer group" in message
    assert run_as(user, server.path, "status", socket_dir)["hello"]["user"] == user.pw_name  # reachable again
