"""The decision's one way to the outside: the `World` interface.

`gatekeeper.decision.decide` asks a world what it cannot know from the command
and the policy: what a host path resolves to, what a file holds, what the engine
says about an object, which host paths other live sessions hold. Production
answers from the file system and the engine (gatekeeper.worlds); tests answer
from fakes that live with the tests (tests/fakes.py).

Only type checkers import this module: the ForceCommand path never pays for
`typing` (the worlds match the protocol structurally).
"""

from __future__ import annotations

from typing import Protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.policy import Policy

# (kind, path or count): what a session puts in flight (gatekeeper.inflight)
Claim = tuple[str, str]
# (exit status, stdout, stderr) of one question to the pinned docker
EngineAnswer = tuple[int, bytes, bytes]
ONE_MIB = 1 << 20


class PathResolver(Protocol):
    """What the host-path rule (gatekeeper.paths) asks: the API layer answers it from the engine."""

    def realpath(self, path: str) -> str:
        """`path` resolved as root's docker would resolve it (may raise Denied)."""
        ...

    def inert_mount(self, path: str) -> bool:
        """True when `path` (or, if absent, its nearest existing ancestor) lies on a mount
        with both nosuid and nodev (gatekeeper.paths.require_inert_mount)."""
        ...


class World(PathResolver, Protocol):
    """What a decision may ask of the outside world. Every method may raise
    `gatekeeper.errors.Denied`: a world that cannot answer safely refuses."""

    def read_file(self, path: str, limit: int = ONE_MIB) -> bytes:
        """At most `limit`+1 bytes of a file the decision looks into (compose files); b"" if absent."""
        ...

    def read_pinned(self, path: str, limit: int = ONE_MIB) -> bytes:
        """The bytes of a resolved host file docker's CLI would read (gatekeeper.pinning)."""
        ...

    def new_stage(self) -> str:
        """A fresh private directory for one compose render's files (gatekeeper.vetting.compose_render);
        "" in a world that stages nothing (the render then reads the paths themselves)."""
        ...

    def stage_files(self, root: str, files: dict[str, bytes]) -> None:
        """Write `files` (absolute path -> bytes) at root + path, never over an existing file."""
        ...

    def drop_stage(self, root: str) -> None:
        """Remove a stage once the renders are done."""
        ...

    def addresses(self, name: str) -> list[str]:
        """The addresses a registry name resolves to on this host, as the engine's resolver
        finds them ([] when it does not resolve: the engine cannot pull from it either)."""
        ...

    def read_stdin(self, limit: int = ONE_MIB) -> bytes | None:
        """At most `limit`+1 bytes the client sends on stdin, read once (a Dockerfile or context
        on stdin: the decision hands docker exactly these bytes); None without a client."""
        ...

    def run_docker(self, policy: Policy, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> EngineAnswer:
        """Ask the pinned docker (compose renders, ownership and volume queries, counts)."""
        ...

    def disk_usage(self, policy: Policy) -> dict[str, object]:
        """The engine's own accounting (`GET /system/df`), for [limits] disk_budget."""
        ...

    def claims_in_flight(self, policy: Policy) -> list[Claim]:
        """Host paths and counts other live gatekeeper sessions hold."""
        ...
