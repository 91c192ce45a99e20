"""Make untrusted text safe to show in an operator's terminal.

Every string in the audit log came from the agent (or from someone who could
append to the log), so it may carry ANSI/OSC escape sequences, bidi overrides,
zero-width characters, combining marks, or bytes that are not UTF-8. Shown
raw, such a string could recolour or forge lines, hide part of a command, or
plant a hyperlink. ``visible`` replaces every such character by a visible
escape (``\\x1b``, ``\\u202e``); a literal backslash becomes ``\\\\`` so the
escaped form is unambiguous. Rich markup (``[bold red]``) is not touched here:
it is harmless as long as renderers use ``rich.text.Text`` and never markup.
"""

from __future__ import annotations

import unicodedata
from types import MappingProxyType
from typing import Final

# Unicode categories that draw nothing, draw somewhere else, or change how
# neighbours draw: controls, format (bidi, zero-width), surrogates, private
# use, unassigned, line/paragraph separators, non-ASCII spaces, combining marks.
HIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs", "Mn", "Me"})

NAMED_ESCAPES: Final = MappingProxyType({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})

# surrogateescape maps an undecodable byte 0xNN to the lone surrogate U+DCNN.
_SURROGATE_BYTE_FIRST: Final = 0xDC80
_SURROGATE_BYTE_LAST: Final = 0xDCFF


def visible(text: str) -> str:
    """Return ``text`` with every hidden or terminal-active character escaped."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    return "".join(map(visible_char, text))


def visible_char(char: str) -> str:
    """Escape one character if it could act on the terminal or hide itself."""
    named = NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x80:
        return char if char.isprintable() else f"\\x{code:02x}"
    if _SURROGATE_BYTE_FIRST <= code <= _SURROGATE_BYTE_LAST:
        return f"\\x{code - 0xDC00:02x}"  # the original invalid byte
    if unicodedata.category(char) in HIDDEN_CATEGORIES:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return char


def shown(text: str, limit: int) -> str:
    """Clip first (so an escape is never cut in half), then escape."""
    if len(text) <= limit:
        return visible(text)
    return f"{visible(text[:limit])}…[+{len(text) - limit} chars]"
