"""Text from the engine or the CLI that reaches the agent or the audit log: printable
ASCII only (a control byte or escape sequence in a message is shown as '?'), bounded.
A leaf module: the vetters, the engine API client and the API layer all use it."""

from __future__ import annotations

MESSAGE_LIMIT = 200


def printable(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """At most `limit` characters of `text`, each outside ' '..'~' as '?'."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text[:limit])


def first_error(err: bytes, limit: int = MESSAGE_LIMIT) -> str:
    """The first stderr line that is not a warning, printable, truncated with '...'."""
    lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    errors = [line for line in lines if "level=warning" not in line]
    line = (errors or lines or ["(no message)"])[0]
    return printable(line, limit) + ("..." if len(line) > limit else "")
