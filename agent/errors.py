"""Every error the agent raises on purpose, and the exit code each one maps to.

    ServiceGateError                 exit 1 unless a subclass says otherwise
    +-- ConfigError                  exit 2  bad or missing agent.toml
    +-- UsageError                   exit 2  bad command-line input (duration, time, level)
    +-- RefusedError                 exit 1  the request is understood but not allowed now
    |   +-- IllegalTransition        exit 1  a session cannot move from one state to another
    |   +-- NotFoundError            exit 1  no such session
    +-- PermissionDeniedError        exit 5  the caller's role does not allow the operation
    +-- AgentUnreachableError        exit 4  no agent answers on the control socket
    +-- ProtocolError                exit 1  the other side broke the control protocol
    +-- AuditError                   exit 1  the audit log cannot be written or read
    +-- PortalError                  exit 1  enrollment or the link to the portal failed or was refused

Every message is written for the person who reads it: what happened, the bad value,
and what to do about it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The one exit-code table shared by `servicegate`, `servicegate-install` and `servicegate-portal`."""

    OK = 0
    FAILED = 1  # a check failed or the operation was refused
    USAGE = 2  # usage or configuration error
    PARTIAL = 3  # partly done: some inputs were refused
    UNREACHABLE = 4  # the agent is not reachable
    PERMISSION = 5  # permission denied


class ServiceGateError(Exception):
    """Base of every deliberate ServiceGate error."""

    exit_code: ExitCode = ExitCode.FAILED
    code: str = "failed"  # the control protocol's error code


class ConfigError(ServiceGateError):
    exit_code = ExitCode.USAGE
    code = "bad_config"


class UsageError(ServiceGateError):
    exit_code = ExitCode.USAGE
    code = "bad_request"


class RefusedError(ServiceGateError):
    code = "refused"


class IllegalTransition(RefusedError):
    code = "illegal_transition"

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a session cannot go from '{current}' to '{target}'")
        self.current = current
        self.target = target


class NotFoundError(RefusedError):
    code = "not_found"


class PermissionDeniedError(ServiceGateError):
    exit_code = ExitCode.PERMISSION
    code = "permission_denied"


class AgentUnreachableError(ServiceGateError):
    exit_code = ExitCode.UNREACHABLE
    code = "unreachable"


class ProtocolError(ServiceGateError):
    code = "protocol_error"


class AuditError(ServiceGateError):
    code = "audit_error"


class PortalError(ServiceGateError):
    code = "portal_error"


# Protocol error code -> exception class, so the client re-raises what the server raised.
ERROR_CLASSES: dict[str, type[ServiceGateError]] = {
    cls.code: cls
    for cls in (
        ServiceGateError,
        ConfigError,
        UsageError,
        RefusedError,
        NotFoundError,
        PermissionDeniedError,
        AgentUnreachableError,
        ProtocolError,
        AuditError,
        PortalError,
    )
}
ERROR_CLASSES["illegal_transition"] = RefusedError  # the client needs no state names to re-raise it
ERROR_CLASSES["unsupported_version"] = ProtocolError
ERROR_CLASSES["too_large"] = UsageError
