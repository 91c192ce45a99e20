"""The decision's questions to the engine, asked over the upstream socket directly
(never through the proxy's own socket, where they would be decided on again)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from gatekeeper.engine_api import (
    MAX_RESPONSE,
    EngineError,
    http_get,
    parse_json,
    parse_response,
    read_all,
    remaining,
)
from gatekeeper.proxy import wire

QUERY_TIMEOUT = 10.0

if TYPE_CHECKING:
    from typing import Any, Protocol

    class ConnectionPool(Protocol):
        """Idle kept-alive engine connections (gatekeeper.proxy.server.UpstreamPool)."""

        def take(self, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None: ...

        def give(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None: ...


class UpstreamEngine:
    """EngineQueries (gatekeeper.proxy.contract) over the engine's unix socket: one
    HTTP/1.1 GET per question, bounded in size and time (gatekeeper.engine_api)."""

    __slots__ = ("socket_path", "timeout")

    def __init__(self, socket_path: str, timeout: float = QUERY_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def get_json(self, target: str) -> tuple[int, object]:
        """(status, parsed JSON); EngineError or OSError when the engine does not answer
        properly (the decision denies on it)."""
        check_target(target)
        status, body = http_get(self.socket_path, target, time.monotonic() + self.timeout)
        return status, parse_json(body)

    def create_volume(self, name: str, labels: dict[str, str]) -> tuple[int, object]:
        """POST /volumes/create {Name, Labels} (the local driver, no options): (status, parsed JSON).
        The engine answers with the volume as it is, made now or found existing."""
        import json

        body = json.dumps({"Name": name, "Labels": labels}, separators=(",", ":")).encode()
        return self.send("POST", "/volumes/create", body)

    def remove_volume(self, name: str) -> tuple[int, object]:
        """DELETE /volumes/{name} (a pull record, gatekeeper.proxy.pulls): (status, parsed JSON or None)."""
        from urllib.parse import quote

        return self.send("DELETE", "/volumes/" + quote(name, safe=""), b"")

    def tag_image(self, name: str, repository: str, tag: str) -> tuple[int, object]:
        """POST /images/{name}/tag?repo=&tag= (a pull record's pin, gatekeeper.proxy.pulls):
        the engine answers 201 and sets the image's LastTagTime."""
        from urllib.parse import quote, urlencode

        query = urlencode({"repo": repository, "tag": tag})
        return self.send("POST", "/images/" + quote(name, safe=":@/") + "/tag?" + query, b"")

    def remove_image(self, name: str) -> tuple[int, object]:
        """DELETE /images/{name}?noprune=1 (the pin's own tag, gatekeeper.proxy.pulls): 200."""
        from urllib.parse import quote

        return self.send("DELETE", "/images/" + quote(name, safe=":@/") + "?noprune=1", b"")

    def remove_container(self, ident: str) -> tuple[int, object]:
        """DELETE /containers/{id}?force=1&v=1 (an --rm container whose start the proxy refused;
        v=1: its anonymous volumes too, as the engine's own removal of an --rm container)."""
        from urllib.parse import quote

        return self.send("DELETE", "/containers/" + quote(ident, safe="") + "?force=1&v=1", b"")

    def send(self, method: str, target: str, body: bytes) -> tuple[int, object]:
        """One request with a JSON body upstream, read whole within the bounds of get_json."""
        import socket

        check_target(target)
        head = (f"{method} {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: gatekeeper-proxy\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode("ascii")
        deadline = time.monotonic() + self.timeout
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(remaining(deadline))
            conn.connect(self.socket_path)
            conn.sendall(head + body)
            status, answer = parse_response(read_all(conn, deadline))
        finally:
            conn.close()
        return status, parse_json(answer) if answer.strip() else None

    def realpath(self, path: str) -> str:
        """A host path resolved as the engine (root) will resolve it when it mounts it;
        Denied where that cannot be proven (gatekeeper.worlds.check_resolution). The proxy
        runs as root or a docker-group member, so it sees what the engine sees."""
        import os

        from gatekeeper.worlds import check_resolution

        resolved = os.path.realpath(path)
        check_resolution(resolved)
        return resolved

    def inert_mount(self, path: str) -> bool:
        """Whether the mount the engine will bind `path` from has nosuid and nodev."""
        from gatekeeper.worlds import mount_is_inert

        return mount_is_inert(path)

    def addresses(self, name: str) -> list[str]:
        """What a registry name resolves to here, where the engine resolves it."""
        from gatekeeper.worlds import host_addresses

        return host_addresses(name)


def check_target(target: str) -> None:
    # visible ASCII only ("!" to "~"): printable ASCII is " " to "~", and no blank
    if not (target.startswith("/") and target.isascii() and target.isprintable()) or " " in target:
        raise EngineError(f"not a request target: {target!r}")


class EngineSilent(EngineError):
    """A pooled connection the engine closed while it was idle: nothing came back."""


class EngineAnswer:
    """One answer to a decision's question, as the engine gave it: status line, header fields
    (names lowercased), body. Kept by the event loop so that an inspect whose question was
    the very request the client sent can be answered with it (Proxy.decide_on_loop)."""

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


def parsed(answer: EngineAnswer | Exception) -> tuple[int, object] | Exception:
    """An answer to a decision's question as EngineQueries.get_json gives it (or its error)."""
    if isinstance(answer, Exception):
        return answer
    try:
        value = parse_json(answer.body)
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the decision denies on it
        return error
    LAST_PARSED.last = (answer.body, value)
    return answer.status, value


class LastParsed:
    """The body parsed last by `parsed`, with its value: an inspect answered with the decision's
    own question (ApiVerdict.answered_by) is redacted from that value instead of parsing the same
    body again (an inspect object: ~20-60 us of cold JSON; vet.redact_object). Asked by the body's
    bytes (the very object parsed, or equal bytes: the same JSON text parses to the same value; a
    verdict given again on an equal answer, verdicts.AnsweredVerdicts, parses nothing), and only
    read: the decision reads the value, redaction copies it (redaction.redact_tree). One pair,
    replaced whole (one assignment: a reader in a worker thread sees a pair, never half of one)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[bytes, object] | None = None

    def value_of(self, body: bytes) -> tuple[object] | None:
        """(value,) when `body` is the bytes parsed last, else None."""
        last = self.last
        return (last[1],) if last is not None and (last[0] is body or last[0] == body) else None


LAST_PARSED = LastParsed()


async def fetch_pooled(pool: ConnectionPool, socket_path: str, target: str, timeout: float = QUERY_TIMEOUT,
                       loop: asyncio.AbstractEventLoop | None = None) -> EngineAnswer | Exception:
    """A GET as UpstreamEngine.get_json asks it, without a thread, on a kept-alive engine
    connection from `pool` (the relay's pool of connections for small answers): no connect and
    no accept per question. The answer is read by httptools (gatekeeper.proxy.wire) to its end,
    within the same bounds of size (MAX_RESPONSE) and time as UpstreamEngine's, and the
    connection goes back to the pool; one the engine had closed while idle is asked again on a
    fresh connection (a GET changes nothing). The error instead of raising it: the decision is
    run again and meets it at the same question (gatekeeper.proxy.server.EngineNotAsked).
    The time bound is one timer that cancels this task (`loop`: the caller's, asked once per
    connection), not an asyncio.timeout scope, which asks the running loop twice (a getpid
    each on Python 3.11) and builds a context per question."""
    try:
        check_target(target)
    except EngineError as error:
        return error
    loop = loop or asyncio.get_running_loop()
    deadline = Deadline(asyncio.current_task(loop))
    timer = loop.call_later(timeout, deadline.expire)
    try:
        return await ask_pooled(pool, socket_path, target)
    except asyncio.CancelledError:
        if deadline.expired and deadline.task is not None and deadline.task.uncancel() == 0:
            return EngineError("the engine did not answer in time")  # ours, not a shutdown's
        raise
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the decision denies on it
        return error
    finally:
        timer.cancel()


class Deadline:
    """A question's time bound: when it passes, the task asking is cancelled (fetch_pooled
    tells that cancellation from any other by `expired`)."""

    __slots__ = ("task", "expired")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        if self.task is not None:
            self.task.cancel()


async def ask_pooled(pool: ConnectionPool, socket_path: str, target: str) -> EngineAnswer:
    connection = pool.take(socket_path)
    if connection is not None:
        try:
            return await ask_kept_alive(pool, socket_path, connection, target)
        except (EngineSilent, ConnectionError):
            connection[1].close()
    connection = await asyncio.open_unix_connection(socket_path)
    return await ask_kept_alive(pool, socket_path, connection, target)


async def ask_kept_alive(pool: ConnectionPool, socket_path: str,
                         connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                         target: str) -> EngineAnswer:
    reader, writer = connection
    reusable = False
    try:
        writer.write((f"GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: gatekeeper\r\n"
                      "Accept: application/json\r\n\r\n").encode("ascii"))
        answer = wire.ResponseReader()
        buffer = bytearray()
        while (head := wire.split_head(buffer)) is None:
            data = await reader.read(1 << 16)
            if not data:
                raise EngineSilent("the engine closed the connection") if not buffer else \
                    EngineError("the engine's answer was cut short")
            buffer += data
        response = answer.head(head)
        delimited = response.length is not None or response.chunked or answer.complete
        parts = [answer.body(bytes(buffer)) if delimited else bytes(buffer)]
        size = len(parts[0])
        while not (delimited and answer.complete):
            data = await reader.read(1 << 16)
            if not data:
                if delimited:
                    raise EngineError("the engine's answer was cut short")
                break  # an answer delimited by the engine closing: that was all of it
            parts.append(answer.body(data) if delimited else data)
            size += len(parts[-1])
            if size > MAX_RESPONSE:
                raise EngineError(f"answer larger than {MAX_RESPONSE} bytes")
        reusable = delimited and not answer.excess
    finally:
        if reusable:
            pool.give(socket_path, reader, writer)
        else:
            writer.close()
    return EngineAnswer(response.status, response.reason, response.headers, b"".join(parts))
