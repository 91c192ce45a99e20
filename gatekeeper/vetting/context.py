"""What a vetter sees and how it asks for argv rewrites."""

from __future__ import annotations

from gatekeeper.grammar.command_line import Located
from gatekeeper.grammar.pflag import FlagUse, Parsed
from gatekeeper.paths import resolve_host_path

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy
    from gatekeeper.world import World


class Vetted:
    """The outcome of vetting: argv rewrites (index -> replacement words), stdin,
    the output filter (gatekeeper.redaction) docker's stdout goes through, and the
    engine steps (gatekeeper.steps) execution takes around the command."""

    __slots__ = ("rewrites", "stdin", "output_filter", "named_volumes", "binds", "outputs", "prepare",
                 "afterwards", "pins", "starts", "sessions")

    def __init__(self) -> None:
        self.rewrites: dict[int, tuple[int, list[str]]] = {}
        self.stdin: bytes | None = None
        self.output_filter: str | None = None
        self.named_volumes: list[str] = []  # checked against the engine once, at the end
        self.prepare: list[tuple[str, ...]] = []  # before the command, e.g. ("volume-create", NAME)
        self.afterwards: list[tuple[str, ...]] = []  # after it succeeded, e.g. ("pull-record", TAG)
        # (resolved path, what) the engine will bind-mount / the CLI will write (gatekeeper.vetting.binds)
        self.binds: list[tuple[str, str]] = []
        self.outputs: list[tuple[str, str]] = []
        # rewrite index -> (word prefix, bytes): files handed to docker as checked (gatekeeper.pinning)
        self.pins: dict[int, tuple[str, bytes]] = {}
        # what this command will start: "label:TOKEN\tN" / "project:NAME\tN" (gatekeeper.vetting.running)
        self.starts: list[str] = []
        self.sessions: list[str] = []  # the profile, when [limits] max_sessions counts this one

    def claims(self) -> list[tuple[str, str]]:
        """What this command puts in flight (gatekeeper.inflight): (kind, path or count)."""
        return ([("bind", path) for path, _ in self.binds] + [("output", path) for path, _ in self.outputs]
                + [("start", value) for value in self.starts] + [("session", p) for p in self.sessions])


class Context:
    __slots__ = ("argv", "located", "parsed", "policy", "world", "vetted")

    def __init__(self, argv: list[str], located: Located, parsed: Parsed,
                 policy: Policy, world: World) -> None:
        self.argv = argv
        self.located = located
        self.parsed = parsed
        self.policy = policy
        self.world = world
        self.vetted = Vetted()

    def host_path(self, value: str, what: str) -> str:
        """Resolve a host path under the allowed roots, or raise Denied naming `what`."""
        return resolve_host_path(value, what, self.policy, self.world)

    def replace_value(self, parsed: Parsed, use: FlagUse, value: str) -> None:
        """Re-spell one flag use as `--long=value` (keeping combined shorts before it)."""
        if value == use.value:
            return
        words = [use.prefix] if use.prefix else []
        long = use.flag[0]
        words.append(f"--{long}={value}" if long else f"-{use.flag[1]}={value}")
        self.vetted.rewrites[parsed.offset + use.start] = (use.count, words)

    def pin_value(self, parsed: Parsed, use: FlagUse, path: str, data: bytes) -> None:
        """Spell the flag `--long=path` (always), and remember the bytes docker must get."""
        words = [use.prefix] if use.prefix else []
        prefix = f"--{use.flag[0]}="
        words.append(prefix + path)
        index = parsed.offset + use.start
        self.vetted.rewrites[index] = (use.count, words)
        self.vetted.pins[index] = (prefix, data)

    def replace_word(self, index: int, word: str) -> None:
        """Replace the positional at absolute argv index `index`."""
        self.vetted.rewrites[index] = (1, [word])
