"""The ForceCommand's side of the audit intake: hand one record to the proxy.

With `[audit] via_proxy = true` the agent's account cannot open the audit log at all
(root:root 0600): the proxy writes it (gatekeeper.proxy.intake). The ForceCommand
POSTs each record, one JSON line, to `/_gatekeeper/audit` on the proxy's socket
([proxy] listen) and takes a 204 as "written". Anything else (no socket, a refusal,
a timeout, a short answer) is an AuditError: the command is refused, exit 75,
never run unrecorded.

The C socket module and one request line, not http.client or socket: this runs on
every SSH command, http.client imports the email package and socket imports enum
and selectors (milliseconds). The reply is read only as far as its status line.
"""

from __future__ import annotations

import _socket

from gatekeeper.errors import AuditError

INTAKE_TARGET = "/_gatekeeper/audit"
TIMEOUT = 10.0  # seconds for connect, send and the status line together
MAX_REPLY = 4096


def hand_over(socket_path: str, line: str) -> None:
    """Send one encoded record (gatekeeper.audit.encode) and wait for the proxy's 204."""
    body = line.encode("utf-8", "surrogateescape")
    head = (
        f"POST {INTAKE_TARGET} HTTP/1.1\r\nHost: gatekeeper\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(TIMEOUT)
        conn.connect(socket_path)
        conn.sendall(head.encode("ascii") + body)
        status = read_status(conn)
    except OSError as error:
        raise AuditError(f"cannot hand the record to the proxy at {socket_path}: {describe(error)}") from None
    finally:
        conn.close()
    if status != 204:
        raise AuditError(f"the proxy at {socket_path} did not take the record (HTTP {status})")


def read_status(conn: _socket.socket) -> int:
    """The status code of the reply's first line; 0 when there is none."""
    reply = b""
    while b"\r\n" not in reply and len(reply) < MAX_REPLY:
        chunk = conn.recv(MAX_REPLY)
        if not chunk:
            break
        reply += chunk
    words = reply.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(words) < 2 or not words[0].startswith(b"HTTP/1.") or not words[1].isdigit():
        return 0
    return int(words[1])


def describe(error: OSError) -> str:
    return error.strerror or type(error).__name__
