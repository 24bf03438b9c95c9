"""The global hotkey that ends the session (default Ctrl+Alt+End), wherever the keyboard focus is.

Qt has no global shortcut. On X11 the key is grabbed on the root window (XGrabKey, once per combination
of Caps Lock and Num Lock, which would otherwise spoil the match), and a native event filter sees the
key press whichever application has the focus. Xlib is reached through ctypes on the display connection
Qt already holds (QNativeInterface.QX11Application); every Xlib function gets its argument and result
types, or ctypes would pass pointers as ints. Elsewhere (Wayland, the offscreen platform) there is no
global hotkey: `GlobalHotkey.active` is False and the banner's End session button remains.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from PySide6.QtCore import QAbstractNativeEventFilter, QByteArray, QObject, Signal
from PySide6.QtGui import QGuiApplication

from agent.protocol import hotkey_parts

log = logging.getLogger("servicegate.ui.hotkey")

MODIFIERS = {"shift": 1 << 0, "ctrl": 1 << 2, "control": 1 << 2, "alt": 1 << 3, "super": 1 << 6}  # X's masks
LOCKS = (0, 1 << 1, 1 << 4, (1 << 1) | (1 << 4))  # none, Caps Lock, Num Lock (Mod2), both
KEY_PRESS = 2
GRAB_MODE_ASYNC = 1


class HotkeyError(ValueError):
    """A hotkey that cannot be understood: the message says what to write."""


def parse(text: str) -> tuple[int, str]:
    """"Ctrl+Alt+End" -> (X modifier mask, key name), as `[console] hotkey` is checked (agent.config)."""
    try:
        modifiers, key = hotkey_parts(text)
    except ValueError as exc:
        raise HotkeyError(str(exc)) from None
    mask = 0
    for modifier in modifiers:
        mask |= MODIFIERS[modifier]
    return mask, key


class _Filter(QAbstractNativeEventFilter):
    def __init__(self, keycode: int, mask: int, fire: Callable[[], None]) -> None:
        super().__init__()
        self.keycode, self.mask, self.fire = keycode, mask, fire

    def nativeEventFilter(self, eventType: QByteArray | bytes | bytearray | memoryview,  # noqa: N802, N803 - Qt's
                          message: int, /) -> object:
        if bytes(eventType.data() if isinstance(eventType, QByteArray) else eventType) == b"xcb_generic_event_t":
            head = ctypes.string_at(int(message), 32)
            state = int.from_bytes(head[28:30], "little")  # xcb_key_press_event_t.state
            if head[0] & 0x7F == KEY_PRESS and head[1] == self.keycode and state & ~LOCKS[3] & 0xFF == self.mask:
                self.fire()
                return True, 0
        return False, 0


class GlobalHotkey(QObject):
    """The key `text` grabbed on the X root window until `release()`. Raises HotkeyError for a key X does not know."""

    pressed = Signal()

    def __init__(self, text: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.text = text
        self.active = False
        self._filter: _Filter | None = None
        self._ungrab: Callable[[], None] | None = None
        mask, key = parse(text)
        application = QGuiApplication.instance()
        if not isinstance(application, QGuiApplication) or QGuiApplication.platformName() != "xcb":
            log.info("no global hotkey on the %s platform: End session stays on the banner",
                     QGuiApplication.platformName() or "unknown")
            return
        native = application.nativeInterface()
        display = ctypes.c_void_p(int(native.display()))  # type: ignore[attr-defined]
        xlib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        xlib.XStringToKeysym.argtypes, xlib.XStringToKeysym.restype = [ctypes.c_char_p], ctypes.c_ulong
        xlib.XKeysymToKeycode.argtypes, xlib.XKeysymToKeycode.restype = [ctypes.c_void_p, ctypes.c_ulong], \
            ctypes.c_ubyte
        xlib.XDefaultRootWindow.argtypes, xlib.XDefaultRootWindow.restype = [ctypes.c_void_p], ctypes.c_ulong
        xlib.XGrabKey.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_ulong, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_int]
        xlib.XGrabKey.restype = ctypes.c_int
        xlib.XUngrabKey.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_ulong]
        xlib.XUngrabKey.restype = ctypes.c_int
        xlib.XSync.argtypes, xlib.XSync.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        keysym = xlib.XStringToKeysym(key.encode())
        if not keysym:
            raise HotkeyError(f"hotkey {text!r}: {key!r} is not a key name X knows (like End, F12, Pause)")
        keycode = int(xlib.XKeysymToKeycode(display, keysym))
        root = xlib.XDefaultRootWindow(display)
        for lock in LOCKS:
            xlib.XGrabKey(display, keycode, mask | lock, root, 1, GRAB_MODE_ASYNC, GRAB_MODE_ASYNC)
        xlib.XSync(display, 0)
        self._filter = _Filter(keycode, mask, self.pressed.emit)
        application.installNativeEventFilter(self._filter)

        def ungrab() -> None:
            for lock in LOCKS:
                xlib.XUngrabKey(display, keycode, mask | lock, root)
            xlib.XSync(display, 0)

        self._ungrab = ungrab
        self.active = True
        log.info("global hotkey %s grabbed", text)

    def release(self) -> None:
        """Let the key go (another hotkey takes its place)."""
        application = QGuiApplication.instance()
        if self._filter is not None and isinstance(application, QGuiApplication):
            application.removeNativeEventFilter(self._filter)
        if self._ungrab is not None:
            self._ungrab()
        self._filter, self._ungrab, self.active = None, None, False
