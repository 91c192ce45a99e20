"""The decision's questions to the engine, asked over the upstream socket directly
(never through the proxy's own socket, where they would be decided on again)."""

from __future__ import annotations

import asyncio
import time

from gatekeeper.engine_api import (
    MAX_HEADER,
    MAX_RESPONSE,
    EngineError,
    http_get,
    parse_json,
    parse_response,
    read_all,
    remaining,
)

QUERY_TIMEOUT = 10.0


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
        import socket

        body = json.dumps({"Name": name, "Labels": labels}, separators=(",", ":")).encode()
        head = ("POST /volumes/create HTTP/1.1\r\nHost: docker\r\nUser-Agent: gatekeeper-proxy\r\n"
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
        return status, parse_json(answer)

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


def check_target(target: str) -> None:
    if not target.startswith("/") or any(ch < "!" or ch > "~" for ch in target):
        raise EngineError(f"not a request target: {target!r}")


async def get_json_on_loop(socket_path: str, target: str,
                           timeout: float = QUERY_TIMEOUT) -> tuple[int, object] | Exception:
    """UpstreamEngine.get_json without a thread: the same request on a connection of its own
    (Connection: close), read to its end within the same bounds of size and time and parsed
    by the same strict parser. The error instead of raising it: the decision is run again
    and meets it at the same question (gatekeeper.proxy.server.EngineNotAsked)."""
    try:
        check_target(target)
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            try:
                writer.write((f"GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: gatekeeper\r\n"
                              "Accept: application/json\r\nConnection: close\r\n\r\n").encode("ascii"))
                chunks: list[bytes] = []
                size = 0
                while chunk := await reader.read(1 << 16):
                    size += len(chunk)
                    if size > MAX_RESPONSE + MAX_HEADER:
                        raise EngineError(f"answer larger than {MAX_RESPONSE} bytes")
                    chunks.append(chunk)
            finally:
                writer.close()
        status, body = parse_response(b"".join(chunks))
        return status, parse_json(body)
    except TimeoutError:
        return EngineError("the engine did not answer in time")
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the decision denies on it
        return error
