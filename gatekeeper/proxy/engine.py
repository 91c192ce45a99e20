"""The decision's questions to the engine, asked over the upstream socket directly
(never through the proxy's own socket, where they would be decided on again)."""

from __future__ import annotations

import time

from gatekeeper.engine_api import EngineError, http_get, parse_json

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
        if not target.startswith("/") or any(ch < "!" or ch > "~" for ch in target):
            raise EngineError(f"not a request target: {target!r}")
        status, body = http_get(self.socket_path, target, time.monotonic() + self.timeout)
        return status, parse_json(body)

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
