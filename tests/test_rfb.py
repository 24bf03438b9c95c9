"""The viewer-to-server RFB filter, fed the bytes a real VNC viewer sends (RFC 6143, built with struct)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.rfb import MAX_CUT_TEXT, ClientFilter, Filtered, RfbError

# --- the viewer's side of the handshake ---------------------------------------------------------------------------

VERSION_38 = b"RFB 003.008\n"
VERSION_37 = b"RFB 003.007\n"
SECURITY_NONE = bytes([1])
SECURITY_VNC_AUTH = bytes([2])
DES_RESPONSE = bytes(range(0x30, 0x40))  # the 16-byte answer to the server's challenge
SHARED = bytes([1])  # ClientInit: share the desktop with other viewers

HANDSHAKE_VNC_AUTH = VERSION_38 + SECURITY_VNC_AUTH + DES_RESPONSE + SHARED
HANDSHAKE_NONE = VERSION_37 + SECURITY_NONE + SHARED


# --- client messages, exactly as a viewer packs them --------------------------------------------------------------

def set_pixel_format(bits: int = 32, depth: int = 24) -> bytes:
    # type, 3 padding, then PIXEL_FORMAT: bpp, depth, big-endian, true-colour, max r/g/b, shift r/g/b, 3 padding
    return struct.pack(">B3xBBBBHHHBBB3x", 0, bits, depth, 0, 1, 255, 255, 255, 16, 8, 0)


def set_encodings(*encodings: int) -> bytes:
    return struct.pack(">BxH", 2, len(encodings)) + struct.pack(f">{len(encodings)}i", *encodings)


def update_request(incremental: bool, x: int = 0, y: int = 0, width: int = 1280, height: int = 1024) -> bytes:
    return struct.pack(">BBHHHH", 3, incremental, x, y, width, height)


def key(down: bool, keysym: int) -> bytes:
    return struct.pack(">BBxxI", 4, down, keysym)


def pointer(buttons: int, x: int, y: int) -> bytes:
    return struct.pack(">BBHH", 5, buttons, x, y)


def cut_text(text: bytes) -> bytes:
    return struct.pack(">BxxxI", 6, len(text)) + text


# Tight, ZRLE, Hextile, CopyRect, Raw, then the pseudo-encodings DesktopSize, Cursor and LastRect
ENCODINGS = set_encodings(7, 16, 5, 1, 0, -223, -239, -224)
SCREEN = [set_pixel_format(), ENCODINGS, update_request(False), update_request(True)]
INPUT = [key(True, 0x61), key(False, 0x61), pointer(0, 640, 512), pointer(1, 641, 512), pointer(0, 641, 512)]
CLIPBOARD = cut_text(b"study 1.2.840.113619 looks fine")


def session() -> list[bytes]:
    """A viewer's first seconds: formats and encodings, a full update, typing, the mouse, a paste, more updates."""
    return [set_pixel_format(), ENCODINGS, update_request(False), key(True, 0x61), key(False, 0x61),
            update_request(True), pointer(0, 640, 512), pointer(1, 641, 512), CLIPBOARD, update_request(True)]


def feed_all(rfb: ClientFilter, chunks: list[bytes]) -> Filtered:
    """The chunks fed one by one, their results added up."""
    results = [rfb.feed(chunk) for chunk in chunks]
    return Filtered(forward=b"".join(r.forward for r in results), inputs=sum(r.inputs for r in results),
                    dropped=sum(r.dropped for r in results))


def test_the_messages_are_the_bytes_of_rfc_6143() -> None:
    """The helpers above against bytes written out by hand from the RFC's tables."""
    assert key(True, 0x61) == bytes.fromhex("04 01 0000 00000061")
    assert pointer(1, 641, 512) == bytes.fromhex("05 01 0281 0200")
    assert update_request(True) == bytes.fromhex("03 01 0000 0000 0500 0400")
    assert set_encodings(16, -223) == bytes.fromhex("02 00 0002 00000010 ffffff21")
    assert cut_text(b"hi") == bytes.fromhex("06 000000 00000002 6869")
    assert set_pixel_format() == bytes.fromhex("00 000000 20 18 00 01 00ff 00ff 00ff 10 08 00 000000")


# --- view-only and control ----------------------------------------------------------------------------------------

def test_view_only_drops_keys_pointer_and_clipboard_and_forwards_the_rest_unchanged() -> None:
    result = ClientFilter().feed(HANDSHAKE_VNC_AUTH + b"".join(session()))
    assert result.forward == (HANDSHAKE_VNC_AUTH + set_pixel_format() + ENCODINGS + update_request(False)
                              + update_request(True) + update_request(True))
    assert result.inputs == 4
    assert result.dropped == 5


def test_control_forwards_every_byte_unchanged() -> None:
    stream = HANDSHAKE_VNC_AUTH + b"".join(session())
    result = ClientFilter(control=True).feed(stream)
    assert result == Filtered(forward=stream, inputs=4, dropped=0)


def test_inputs_are_keys_and_pointer_moves_not_update_requests() -> None:
    rfb = ClientFilter(control=True)
    assert rfb.feed(HANDSHAKE_VNC_AUTH + b"".join(SCREEN) + update_request(True) * 50).inputs == 0
    assert rfb.feed(CLIPBOARD).inputs == 0
    assert rfb.feed(pointer(0, 10, 10)).inputs == 1  # no button down: the mouse moved, the engineer is there
    assert rfb.feed(key(True, 0xFF0D) + key(False, 0xFF0D) + pointer(4, 10, 10)).inputs == 3


def test_view_only_input_still_counts_for_the_idle_timer() -> None:
    result = ClientFilter().feed(HANDSHAKE_VNC_AUTH + b"".join(INPUT))
    assert result == Filtered(forward=HANDSHAKE_VNC_AUTH, inputs=5, dropped=5)


def test_security_type_none_goes_straight_to_client_init() -> None:
    # No DES response follows type 1: the byte after it is ClientInit, and the key event after that is a message.
    result = ClientFilter().feed(HANDSHAKE_NONE + key(True, 0x61) + update_request(True))
    assert result == Filtered(forward=HANDSHAKE_NONE + update_request(True), inputs=1, dropped=1)


def test_a_message_is_forwarded_only_when_complete() -> None:
    units = [VERSION_38, SECURITY_VNC_AUTH, DES_RESPONSE, SHARED, *session()]
    rfb = ClientFilter(control=True)
    forwarded = [result.forward for byte in b"".join(units) if (result := rfb.feed(bytes([byte]))).forward]
    assert forwarded == units
    assert rfb.buffered == 0


def test_flipping_control_applies_from_the_next_whole_message() -> None:
    rfb = ClientFilter()
    assert rfb.feed(HANDSHAKE_VNC_AUTH + key(True, 0x61)) == Filtered(forward=HANDSHAKE_VNC_AUTH, inputs=1, dropped=1)
    rfb.control = True  # the technologist allows control
    assert rfb.feed(key(False, 0x61)) == Filtered(forward=key(False, 0x61), inputs=1, dropped=0)
    rfb.control = False  # and takes it back
    assert rfb.feed(pointer(1, 5, 5) + update_request(True)) == Filtered(forward=update_request(True), inputs=1,
                                                                         dropped=1)


def test_a_message_split_across_a_flip_follows_the_mode_in_which_it_completes() -> None:
    rfb = ClientFilter(control=True)
    rfb.feed(HANDSHAKE_VNC_AUTH)
    assert rfb.feed(pointer(1, 300, 200)[:3]) == Filtered(forward=b"", inputs=0, dropped=0)
    rfb.control = False
    assert rfb.feed(pointer(1, 300, 200)[3:]) == Filtered(forward=b"", inputs=1, dropped=1)

    assert rfb.feed(key(True, 0x62)[:5]) == Filtered(forward=b"", inputs=0, dropped=0)
    rfb.control = True
    assert rfb.feed(key(True, 0x62)[5:]) == Filtered(forward=key(True, 0x62), inputs=1, dropped=0)


def test_only_the_incomplete_message_is_kept() -> None:
    rfb = ClientFilter()
    rfb.feed(HANDSHAKE_VNC_AUTH + cut_text(b"x" * MAX_CUT_TEXT) + key(True, 0x61)[:3])
    assert rfb.buffered == 3
    assert rfb.feed(key(True, 0x61)[3:]) == Filtered(forward=b"", inputs=1, dropped=1)
    assert rfb.buffered == 0


def test_clipboard_text_of_exactly_the_limit_passes_under_control() -> None:
    text = bytes(range(256)) * (MAX_CUT_TEXT // 256)
    rfb = ClientFilter(control=True)
    rfb.feed(HANDSHAKE_NONE)
    chunks = [cut_text(text)[i:i + 65536] for i in range(0, 8 + MAX_CUT_TEXT, 65536)]
    assert feed_all(rfb, chunks) == Filtered(forward=cut_text(text), inputs=0, dropped=0)


def test_extended_clipboard_messages_are_framed_by_their_negative_length() -> None:
    # TigerVNC's extended clipboard "notify" (flags: text format): length -4, then 4 bytes of flags
    notify = struct.pack(">Bxxxi", 6, -4) + struct.pack(">I", 0x08000001)
    result = ClientFilter().feed(HANDSHAKE_VNC_AUTH + notify + update_request(True))
    assert result == Filtered(forward=HANDSHAKE_VNC_AUTH + update_request(True), inputs=0, dropped=1)
    stream = HANDSHAKE_VNC_AUTH + notify + key(True, 0x61)
    assert ClientFilter(control=True).feed(stream) == Filtered(forward=stream, inputs=1, dropped=0)


# --- streams the filter refuses -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [b"RFB 003.003\n", b"RFB 003.005\n", b"RFB 003.889\n", b"RFB 004.001\n"])
def test_versions_other_than_3_7_and_3_8_are_refused(version: bytes) -> None:
    with pytest.raises(RfbError, match=r"the server alone picks the security type") as refused:
        ClientFilter().feed(version + DES_RESPONSE + SHARED)
    major, minor = int(version[4:7]), int(version[8:11])
    assert f"RFB {major}.{minor}," in str(refused.value)


def test_a_stream_that_is_not_rfb_is_refused() -> None:
    with pytest.raises(RfbError, match=r"did not open with an RFB ProtocolVersion \(it sent b'GET / HTTP/1'\)"):
        ClientFilter().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


@pytest.mark.parametrize(("security", "named"), [(19, "19 (VeNCrypt)"), (16, "16 (Tight)"), (99, "99,")])
def test_an_unknown_security_type_is_refused_by_number(security: int, named: str) -> None:
    with pytest.raises(RfbError, match=r"only None \(1\) or VNC Authentication \(2\)") as refused:
        ClientFilter().feed(VERSION_38 + bytes([security]))
    assert f"security type {named}" in str(refused.value)


@pytest.mark.parametrize("kind", [1, 7, 150, 251, 255])
def test_an_unknown_message_type_is_refused_as_soon_as_its_type_byte_arrives(kind: int) -> None:
    rfb = ClientFilter(control=True)
    rfb.feed(HANDSHAKE_VNC_AUTH + update_request(True))
    with pytest.raises(RfbError) as refused:
        rfb.feed(bytes([kind]))
    assert str(refused.value) == (f"the viewer sent RFB message type {kind}, which the relay does not know: "
                                  f"sharing ended; use a plain VNC viewer")


def test_clipboard_text_over_the_limit_is_refused_from_its_header() -> None:
    rfb = ClientFilter()
    rfb.feed(HANDSHAKE_VNC_AUTH)
    with pytest.raises(RfbError, match=rf"{MAX_CUT_TEXT + 1} bytes of clipboard data, more than the relay passes"):
        rfb.feed(struct.pack(">BxxxI", 6, MAX_CUT_TEXT + 1))  # no text yet: the length alone is enough


def test_an_extended_clipboard_message_over_the_limit_is_refused() -> None:
    with pytest.raises(RfbError, match=r"2147483648 bytes of clipboard data"):
        ClientFilter().feed(HANDSHAKE_VNC_AUTH + struct.pack(">Bxxxi", 6, -(2**31)))


def test_a_refused_stream_stays_refused() -> None:
    rfb = ClientFilter(control=True)
    with pytest.raises(RfbError, match="message type 9"):
        rfb.feed(HANDSHAKE_VNC_AUTH + bytes([9]))
    with pytest.raises(RfbError, match=r"already refused \(the viewer sent RFB message type 9"):
        rfb.feed(update_request(True))
    assert rfb.buffered == 0


# --- any chunking, the same result --------------------------------------------------------------------------------

messages = st.one_of(
    st.builds(set_pixel_format, st.sampled_from([8, 16, 32]), st.sampled_from([8, 16, 24])),
    st.builds(lambda encodings: set_encodings(*encodings),
              st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20)),
    st.builds(update_request, st.booleans(), st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535),
              st.integers(0, 65535)),
    st.builds(key, st.booleans(), st.integers(0, 2**32 - 1)),
    st.builds(pointer, st.integers(0, 255), st.integers(0, 65535), st.integers(0, 65535)),
    st.builds(cut_text, st.binary(max_size=300)),
)


@settings(max_examples=300, deadline=None)
@given(handshake=st.sampled_from([HANDSHAKE_VNC_AUTH, HANDSHAKE_NONE]), sequence=st.lists(messages, max_size=30),
       control=st.booleans(), data=st.data())
def test_any_chunking_gives_the_same_result_as_the_whole_stream(
        handshake: bytes, sequence: list[bytes], control: bool, data: st.DataObject) -> None:
    stream = handshake + b"".join(sequence)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=40), label="cuts"))
    chunks = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    whole = ClientFilter(control=control).feed(stream)
    chunked = ClientFilter(control=control)
    assert feed_all(chunked, chunks) == whole
    assert chunked.buffered == 0

    control_only = [m for m in sequence if m[0] in (4, 5, 6)]
    kept = sequence if control else [m for m in sequence if m[0] not in (4, 5, 6)]
    assert whole.forward == handshake + b"".join(kept)
    assert whole.inputs == sum(m[0] in (4, 5) for m in sequence)
    assert whole.dropped == (0 if control else len(control_only))
