"""Who is calling the control socket, and what they may do: peer credentials mapped to roles.

Who the caller is comes from SO_PEERCRED, read once when the connection is accepted (the kernel
vouches for it, so no password or token is exchanged). Roles are derived from the uid and the
groups of that uid, looked up on every new connection, so a group change made by site IT takes
effect on the next connection without restarting the agent.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from agent.protocol import Role


@dataclass(frozen=True)
class Caller:
    """The process at the other end of a connection, as the kernel reported it when it connected."""

    pid: int
    uid: int
    gid: int
    user: str  # the user name, or "uid:N" when the uid has no passwd entry
    roles: frozenset[Role]


class RoleMap:
    """Derives a caller's roles from its uid and gid.

    admin: uid 0, or one of `admin_uids` (the agent's own service user). console, modality,
    viewer: membership in the configured groups ([control] console_group, modality_group,
    viewer_group), as the user database says (primary group and supplementary groups) plus the
    process's own gid. A configured group that does not exist grants nothing; a uid without a
    passwd entry has no group roles.
    """

    def __init__(self, console_group: str, modality_group: str, viewer_group: str,
                 admin_uids: frozenset[int]) -> None:
        self.groups: dict[Role, str] = {
            Role.CONSOLE: console_group,
            Role.MODALITY: modality_group,
            Role.VIEWER: viewer_group,
        }
        self.admin_uids = admin_uids

    def roles_for(self, uid: int, gid: int) -> frozenset[Role]:
        roles: set[Role] = set()
        if uid == 0 or uid in self.admin_uids:
            roles.add(Role.ADMIN)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return frozenset(roles)
        try:
            member_of = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
        except OSError:
            member_of = {entry.pw_gid}
        member_of.add(gid)
        for role, group in self.groups.items():
            group_gid = _group_gid(group)
            if group_gid is not None and group_gid in member_of:
                roles.add(role)
        return frozenset(roles)

    def caller(self, pid: int, uid: int, gid: int) -> Caller:
        """The Caller for a set of peer credentials (may block on NSS: LDAP/SSSD sites)."""
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = f"uid:{uid}"
        return Caller(pid=pid, uid=uid, gid=gid, user=user, roles=self.roles_for(uid, gid))

    def how_to_get(self, role: Role) -> str:
        """What a user who lacks `role` can do about it, for the permission_denied message."""
        if role is Role.ADMIN:
            return "only root or the agent's own service user may do this"
        if role is Role.VIEWER:
            return (f"ask site IT to add you to group '{self.groups[Role.VIEWER]}' "
                    f"(or '{self.groups[Role.CONSOLE]}')")
        return f"ask site IT to add you to group '{self.groups[role]}'"


def _group_gid(name: str) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
