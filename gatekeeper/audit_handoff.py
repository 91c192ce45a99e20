"""The ForceCommand's side of the audit intake: hand its records to the proxy.

With `[audit] via_proxy = true` the agent's account cannot open the audit log at all
(root:root 0600): the proxy writes it (gatekeeper.proxy.intake). The ForceCommand
POSTs each record, one JSON line, to `/_gatekeeper/audit` on the proxy's socket
([proxy] listen) and takes a 204 as "written". Anything else (no socket, a refusal,
a timeout, a short answer) is an AuditError: the command is refused, exit 75,
never run unrecorded.

An allowed command hands over two records, its decision before docker runs and its
exit line after: both go on one connection (`Intake`), kept open between them, so
the exit line costs no second connect and accept (under load, each is a wake-up of
the proxy's loop: ~1 ms). The connection is opened before the decision is made
(`open_early`), so the proxy accepts it meanwhile. Should the proxy have closed it
before a record is sent (its idle_timeout, a restart), the record goes on a fresh one.
A command still running after a second (a stream, a long build) gives the connection
back meanwhile (`release`): it would hold one of the uid's connections to the proxy.

The C socket module and one request line, not http.client or socket: this runs on
every SSH command, http.client imports the email package and socket imports enum
and selectors (milliseconds). The reply is read only as far as its head.
"""

from __future__ import annotations

import _socket

from gatekeeper.errors import AuditError

INTAKE_TARGET = "/_gatekeeper/audit"
TIMEOUT = 10.0  # seconds for connect, send and the status line together
MAX_REPLY = 4096


class Intake:
    """The proxy's intake socket, one connection for a session's records."""

    __slots__ = ("socket_path", "kept")

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.kept: _socket.socket | None = None  # open after a record handed over with more=True

    def open_early(self) -> None:
        """Connect now, before the record exists: the proxy accepts (and sets the connection
        up) while the decision is made, not while the command waits for its 204. A failure
        here is no answer yet: hand_over connects again and fails closed then."""
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            conn.settimeout(TIMEOUT)
            conn.connect(self.socket_path)
        except OSError:
            conn.close()
            return
        self.kept = conn

    def release(self) -> None:
        """Close the kept connection (docker runs long: it would hold one of the uid's
        [proxy] max_connections_per_user); the next record connects afresh."""
        kept, self.kept = self.kept, None
        if kept is not None:
            kept.close()

    def hand_over(self, line: str, *, more: bool = False) -> None:
        """Send one encoded record (gatekeeper.audit.encode) and wait for the proxy's 204;
        `more`: another record follows, keep the connection for it."""
        request = encoded(line, more)
        kept, self.kept = self.kept, None
        if kept is not None:
            status, reusable = exchange(kept, request, more)
            if status:
                return self.settle(kept, status, reusable and more)
            # No answer at all: the proxy closed the kept connection (idle_timeout, restart)
            # before reading this record. It goes once more, on a fresh connection.
        try:
            conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        except OSError as error:
            raise AuditError(f"cannot hand the record to the proxy at {self.socket_path}: "
                             f"{describe(error)}") from None
        try:
            conn.settimeout(TIMEOUT)
            conn.connect(self.socket_path)
        except OSError as error:
            conn.close()
            raise AuditError(f"cannot hand the record to the proxy at {self.socket_path}: "
                             f"{describe(error)}") from None
        status, reusable = exchange(conn, request, more)
        self.settle(conn, status, reusable and more)

    def settle(self, conn: _socket.socket, status: int, keep: bool) -> None:
        if status == 204 and keep:
            self.kept = conn
        else:
            conn.close()
        if status == 0:
            raise AuditError(f"cannot hand the record to the proxy at {self.socket_path}: no answer")
        if status != 204:
            rule, hint = REFUSED.get(status, (None, ""))
            raise AuditError(f"the proxy at {self.socket_path} did not take the record (HTTP {status}{hint})",
                             rule)


# The proxy's refusals of a record that say what the agent can do (gatekeeper.proxy.request_rate,
# gatekeeper.proxy.intake): status -> (rule, the rest of the line).
REFUSED: dict[int, tuple[str | None, str]] = {
    429: (None, ": too many requests from this account, [proxy] request_rate or intake_per_minute; "
                "slow down and try again in a few seconds"),
    507: ("audit-full", ": the audit log is full, [audit] max_bytes (or this account's share of it, "
                        "max_bytes_per_uid); the operator must rotate it"),
}


def hand_over(socket_path: str, line: str) -> None:
    """One record on a connection of its own (a denial's only record)."""
    Intake(socket_path).hand_over(line)


def encoded(line: str, more: bool) -> bytes:
    body = line.encode("utf-8", "surrogateescape")
    close = "" if more else "Connection: close\r\n"
    head = (
        f"POST {INTAKE_TARGET} HTTP/1.1\r\nHost: gatekeeper\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{close}\r\n"
    )
    return head.encode("ascii") + body


def exchange(conn: _socket.socket, request: bytes, more: bool) -> tuple[int, bool]:
    """(status code or 0 for no answer, whether the connection can carry another record)."""
    try:
        conn.settimeout(TIMEOUT)
        conn.sendall(request)
        reply = read_head(conn)
    except OSError:
        return 0, False
    words = reply.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(words) < 2 or not words[0].startswith(b"HTTP/1.") or not words[1].isdigit():
        return 0, False
    # Reusable only when the reply was exactly one bodiless head (a 204's).
    return int(words[1]), more and reply.endswith(b"\r\n\r\n") and reply.count(b"\r\n\r\n") == 1


def read_head(conn: _socket.socket) -> bytes:
    """The reply as far as its head's end (or the connection's, or MAX_REPLY bytes)."""
    reply = b""
    while b"\r\n\r\n" not in reply and len(reply) < MAX_REPLY:
        chunk = conn.recv(MAX_REPLY)
        if not chunk:
            break
        reply += chunk
    return reply


def describe(error: OSError) -> str:
    return error.strerror or type(error).__name__
