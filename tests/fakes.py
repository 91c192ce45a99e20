"""Worlds for tests (gatekeeper.world.World): no file system, no engine.

`StaticWorld` normalises paths (following only the links it is given), reads
files from a dict and answers the engine's questions as an engine whose only
objects are the ones named, all the agent's (gatekeeper.worlds.offline_answer,
the answers `check --offline` and `replay` decide with). Tests that need other
answers subclass it and override `run_docker`.
"""

from __future__ import annotations

import os

from gatekeeper.policy import Policy
from gatekeeper.worlds import offline_answer

# What registry names resolve to in the fakes (gatekeeper.worlds.host_addresses); others: nothing.
HOSTS = {
    "registry.loopback.test": ["127.0.0.1"], "rebound.test": ["93.184.216.34", "::1"],
    "metadata.test": ["169.254.169.254"], "mapped.test": ["::ffff:127.0.0.1"], "ghcr.io": ["140.82.121.34"],
}


class StaticWorld:
    """A world with no symlinks but `links`: paths are only normalised."""

    def __init__(self, links: dict[str, str] | None = None, files: dict[str, bytes] | None = None,
                 suid_mounts: tuple[str, ...] = (), stdin: bytes | None = None) -> None:
        self.stdin = stdin  # what the client sends (None: no client, as `gatekeeper check`)
        self.links = dict(links or {})
        self.files = dict(files or {})
        self.suid_mounts = suid_mounts  # mounts without nosuid,nodev (default: none)

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes:
        return self.files.get(path, b"")[: limit + 1]

    def read_pinned(self, path: str, limit: int = 1 << 20) -> bytes:
        return self.read_file(path, limit)

    def addresses(self, name: str) -> list[str]:
        return HOSTS.get(name, [])

    def new_stage(self) -> str:
        """Staged render files are kept in `staged`, under their own paths (root "")."""
        self.staged: dict[str, bytes] = {}
        return ""

    def stage_files(self, root: str, files: dict[str, bytes]) -> None:
        self.staged.update(files)

    def drop_stage(self, root: str) -> None:
        """Nothing was written."""

    def read_stdin(self, limit: int = 1 << 20) -> bytes | None:
        return None if self.stdin is None else self.stdin[: limit + 1]

    def claims_in_flight(self, policy: Policy) -> list[tuple[str, str]]:
        """No other gatekeeper session is in flight."""
        return []

    def run_docker(self, policy: Policy, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        """No engine: ownership queries see exactly the named objects, all the agent's
        (and, for the bind-source invariant, no other container exists)."""
        return offline_answer(policy, args)

    def disk_usage(self, policy: Policy) -> dict[str, object]:
        """An engine holding nothing (no images, volumes or build cache)."""
        return {}

    def inert_mount(self, path: str) -> bool:
        """Every path is on a nosuid,nodev mount unless it lies below one of `suid_mounts`."""
        return not below_any(path, self.suid_mounts)

    def realpath(self, path: str) -> str:
        path = os.path.normpath(path)
        for link, target in self.links.items():
            if path == link or path.startswith(link.rstrip("/") + "/"):
                return self.realpath(target + path[len(link):])
        return path


def below_any(path: str, mounts: tuple[str, ...]) -> bool:
    """`path` is one of `mounts` or lies below one (compared with a trailing separator)."""
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)
