"""The viewer's half of a shared screen, read message by message, so the agent itself holds the vendor to view-only.

When the technologist shares the console's screen, x11vnc listens on loopback and the agent relays bytes between
it and the vendor engineer's VNC viewer at the portal. The agent does not trust the VNC server's own view-only
setting alone (a wrong flag, an old build, a restart with other options): while the technologist has not allowed
control, the engineer's keyboard, pointer and clipboard messages never reach the server, because the relay drops
them here. The same reading gives the relay its idle timer: a key or pointer message is engineer input, a screen
update request is not (a viewer sends those on its own, all the time).

`ClientFilter` is pure and incremental: bytes in, the bytes to forward out, no sockets, no clock, no threads.
It follows RFC 6143 on the client-to-server side only: the ProtocolVersion, the security type the viewer chose
(and the VNC Authentication response), ClientInit, then client messages. Every message is kept back until it is
complete and then forwarded or dropped whole, so how the stream is cut into chunks never changes the result, and a
half of a key event is never on the wire. Anything the filter cannot follow ends the sharing (`RfbError`): guessing
where the next message starts could let input through, so the relay fails closed instead.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import Enum, IntEnum

MAX_CUT_TEXT = 1024 * 1024  # bytes of clipboard text in one ClientCutText; more is not a clipboard, it is a transfer

_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
_VERSION_SIZE = 12
_FOLLOWED_VERSIONS = {(3, 7), (3, 8)}
_VNC_AUTH_RESPONSE_SIZE = 16  # the DES-encrypted challenge, RFC 6143 7.2.2

# Names for the security types a viewer may pick that the filter refuses, to make the message findable.
_SECURITY_NAMES = {0: "Invalid", 5: "RA2", 6: "RA2ne", 16: "Tight", 17: "Ultra", 18: "TLS", 19: "VeNCrypt",
                   30: "Apple Remote Desktop"}


class RfbError(Exception):
    """The viewer's stream cannot be followed: the relay closes the connection (fail closed)."""


class _Security(IntEnum):
    NONE = 1
    VNC_AUTHENTICATION = 2


class _Message(IntEnum):
    """The client-to-server messages of RFC 6143 section 7.5, the only ones the filter lets through."""

    SET_PIXEL_FORMAT = 0  # 20 bytes
    SET_ENCODINGS = 2  # 4 bytes, then 4 per encoding
    FRAMEBUFFER_UPDATE_REQUEST = 3  # 10 bytes; not input: viewers send these on their own
    KEY_EVENT = 4  # 8 bytes; input, dropped in view-only
    POINTER_EVENT = 5  # 6 bytes; input even with no button down (the mouse moved), dropped in view-only
    CLIENT_CUT_TEXT = 6  # 8 bytes, then the text (extended format: length negative); clipboard, dropped in view-only


_FIXED_SIZES = {_Message.SET_PIXEL_FORMAT: 20, _Message.FRAMEBUFFER_UPDATE_REQUEST: 10, _Message.KEY_EVENT: 8,
                _Message.POINTER_EVENT: 6}
_INPUT = {_Message.KEY_EVENT, _Message.POINTER_EVENT}
_CONTROL_ONLY = {_Message.KEY_EVENT, _Message.POINTER_EVENT, _Message.CLIENT_CUT_TEXT}


class _Stage(Enum):
    """Where the viewer's stream is; each stage but the last moves to the next when its bytes are complete."""

    VERSION = "version"  # 12 bytes: "RFB 003.007\n" or "RFB 003.008\n"
    SECURITY = "security"  # 1 byte: the security type the viewer chose from the server's list
    VNC_AUTH = "vnc_auth"  # 16 bytes: the response to the server's challenge (security type 2 only)
    CLIENT_INIT = "client_init"  # 1 byte: the shared flag
    MESSAGES = "messages"  # client messages, each led by its type byte, until the connection ends


@dataclass(frozen=True)
class Filtered:
    """What one chunk of the viewer's stream came to."""

    forward: bytes  # what to pass on to the VNC server, in order
    inputs: int  # key and pointer messages completed in this chunk, forwarded or dropped: the idle timer's input
    dropped: int  # client messages dropped in this chunk (view-only)


class ClientFilter:
    """The viewer-to-server stream of one sharing, filtered as it arrives.

    `control` is read once at the start of each `feed()`, so another thread may flip it between calls; it decides
    the fate of every message that becomes complete in that call, including one whose first bytes came earlier.
    After an `RfbError` the filter refuses every further chunk: the connection must end.
    """

    def __init__(self, *, control: bool = False) -> None:
        self.control = control  # False: key, pointer and clipboard messages are dropped whole
        self._stage = _Stage.VERSION
        self._pending = bytearray()  # the start of the next, incomplete unit; nothing older is kept
        self._refused: RfbError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back until the message they start is complete (at most 8 + MAX_CUT_TEXT between calls)."""
        return len(self._pending)

    def feed(self, data: bytes) -> Filtered:
        """The next bytes from the viewer, in order; any split of the stream into chunks gives the same total."""
        if self._refused is not None:
            raise RfbError(f"the viewer's stream was already refused ({self._refused}); close the connection")
        control = self.control
        self._pending += data
        buffer = self._pending
        forward: list[bytes] = []
        inputs = dropped = 0
        position = 0
        try:
            while (size := self._unit_size(buffer, position)) is not None and len(buffer) - position >= size:
                unit = bytes(buffer[position:position + size])
                position += size
                if self._stage is not _Stage.MESSAGES:
                    self._stage = _next_stage(self._stage, unit)
                    forward.append(unit)  # the handshake passes unchanged, in any mode
                    continue
                kind = _Message(unit[0])
                inputs += kind in _INPUT
                if kind in _CONTROL_ONLY and not control:
                    dropped += 1
                else:
                    forward.append(unit)
        except RfbError as error:
            self._refused = error
            self._pending = bytearray()
            raise
        if position:
            self._pending = bytearray(buffer[position:])  # a fresh copy: the consumed bytes are let go
        return Filtered(forward=b"".join(forward), inputs=inputs, dropped=dropped)

    def _unit_size(self, buffer: bytearray, position: int) -> int | None:
        """The size of the unit starting at `position`, or None while too few of its bytes are here to tell."""
        if self._stage is _Stage.VERSION:
            return _VERSION_SIZE
        if self._stage is _Stage.VNC_AUTH:
            return _VNC_AUTH_RESPONSE_SIZE
        if self._stage is not _Stage.MESSAGES:
            return 1
        return _message_size(buffer, position)


def _next_stage(stage: _Stage, unit: bytes) -> _Stage:
    """The stage after a complete handshake unit; refuses a version or security type the filter cannot follow."""
    if stage is _Stage.VERSION:
        _check_version(unit)
        return _Stage.SECURITY
    if stage is _Stage.SECURITY:
        if unit[0] == _Security.NONE:
            return _Stage.CLIENT_INIT
        if unit[0] == _Security.VNC_AUTHENTICATION:
            return _Stage.VNC_AUTH
        name = f" ({_SECURITY_NAMES[unit[0]]})" if unit[0] in _SECURITY_NAMES else ""
        raise RfbError(f"the viewer chose security type {unit[0]}{name}, which the relay cannot follow: sharing "
                       f"ended; let the VNC server offer only None (1) or VNC Authentication (2) (the link to the "
                       f"portal is TLS already)")
    if stage is _Stage.VNC_AUTH:
        return _Stage.CLIENT_INIT
    return _Stage.MESSAGES  # after ClientInit


def _check_version(unit: bytes) -> None:
    match = _VERSION.fullmatch(unit)
    if match is None:
        raise RfbError(f"the viewer did not open with an RFB ProtocolVersion (it sent {unit!r}): sharing ended; "
                       f"connect with a VNC viewer")
    version = (int(match.group(1)), int(match.group(2)))
    if version not in _FOLLOWED_VERSIONS:
        raise RfbError(f"the viewer asked for RFB {version[0]}.{version[1]}, but the relay follows only 3.7 and 3.8: "
                       f"with 3.3 (and every other version, which servers treat as 3.3) the server alone picks the "
                       f"security type, so the viewer's half of the stream cannot be followed; sharing ended; use a "
                       f"viewer that speaks RFB 3.8")


def _message_size(buffer: bytearray, position: int) -> int | None:
    """The size of the client message starting at `position`, or None until its length fields are here."""
    available = len(buffer) - position
    if available < 1:
        return None
    try:
        kind = _Message(buffer[position])
    except ValueError:
        raise RfbError(f"the viewer sent RFB message type {buffer[position]}, which the relay does not know: "
                       f"sharing ended; use a plain VNC viewer") from None
    if kind in _FIXED_SIZES:
        return _FIXED_SIZES[kind]
    if kind is _Message.SET_ENCODINGS:
        if available < 4:
            return None
        (count,) = struct.unpack_from(">H", buffer, position + 2)
        return 4 + 4 * int(count)
    if available < 8:  # ClientCutText: type, 3 bytes padding, s32 length, the text
        return None
    (length,) = struct.unpack_from(">i", buffer, position + 4)
    # A negative length is the extended clipboard format (a viewer uses it once the server has offered it, and
    # TigerVNC sends one whenever its own clipboard changes); the payload is then -length bytes long.
    if abs(length) > MAX_CUT_TEXT:
        raise RfbError(f"the viewer sent {abs(length)} bytes of clipboard data, more than the relay passes "
                       f"({MAX_CUT_TEXT}): sharing ended; copy less text in the viewer, then share again")
    return 8 + abs(int(length))
