"""What a vetter sees and how it asks for argv rewrites (through the Context
methods below, into one gatekeeper.rewrite_plan.RewritePlan)."""

from __future__ import annotations

from gatekeeper.grammar.command_line import Located
from gatekeeper.grammar.pflag import FlagUse, Parsed
from gatekeeper.paths import resolve_host_path
from gatekeeper.rewrite_plan import RewritePlan

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy
    from gatekeeper.world import World


class Vetted:
    """The outcome of vetting: the argv rewrite plan, the compose model docker is
    fed, the output filter (gatekeeper.redaction) docker's stdout goes through, and
    the engine steps (gatekeeper.steps) execution takes around the command."""

    __slots__ = ("plan", "compose_model", "client_stdin", "output_filter", "named_volumes", "binds",
                 "outputs", "prepare", "afterwards", "starts", "sessions", "copies", "model_snapshots")

    def __init__(self) -> None:
        self.plan = RewritePlan()
        # The vetted compose project (gatekeeper.vetting.compose): later vetters read and
        # label it as data; it is serialised once, for docker's stdin (`stdin`).
        self.compose_model: dict[str, object] | None = None
        self.client_stdin: bytes | None = None  # what the client sent, read and checked (a Dockerfile)
        self.output_filter: str | None = None
        self.named_volumes: list[str] = []  # checked against the engine once, at the end
        self.prepare: list[tuple[str, ...]] = []  # before the command, e.g. ("volume-create", NAME)
        self.afterwards: list[tuple[str, ...]] = []  # after it succeeded, e.g. ("pull-record", TAG)
        # (resolved path, what) the engine will bind-mount / the CLI will write (gatekeeper.vetting.binds)
        self.binds: list[tuple[str, str]] = []
        self.outputs: list[tuple[str, str]] = []
        # what this command will start: "label:TOKEN\tN" / "project:NAME\tN" (gatekeeper.vetting.running)
        self.starts: list[str] = []
        self.sessions: list[str] = []  # the profile, when [limits] max_sessions counts this one
        # files compose reads after the check, pinned: the copy's path in the state dir (named in
        # the vetted model's build.dockerfile, or in argv: compose run --env-from-file) -> (the
        # file it was read from, the bytes checked); the ForceCommand writes them there before
        # compose runs (gatekeeper.pinning.write_pinned_files)
        self.copies: dict[str, tuple[str, bytes]] = {}
        # (key path in the compose model, decided directory): build contexts compose reads after
        # the check, handed to it as snapshots (gatekeeper.context_snapshot)
        self.model_snapshots: list[tuple[tuple[str, ...], str]] = []

    def stdin(self) -> bytes | None:
        """What docker reads on stdin: the vetted compose model, serialised here only, or
        the client's stdin as it was read and checked (a Dockerfile or context on stdin)."""
        if self.compose_model is None:
            return self.client_stdin
        import json

        return json.dumps(self.compose_model, indent=1).encode()

    def pinned_files(self) -> list[tuple[str, bytes]]:
        """(path in the state dir, bytes) the ForceCommand writes before docker runs."""
        return [(path, data) for path, (_, data) in self.copies.items()]

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

    def replace_value(self, use: FlagUse, value: str) -> None:
        """Re-spell one flag use as `--long=value` (keeping combined shorts before it)."""
        if value != use.value:
            self.vetted.plan.replace(use.start, use.count, respelled(use, value))

    def pin_value(self, use: FlagUse, path: str, data: bytes) -> None:
        """Spell the flag `--long=path` (always), and remember the bytes docker must get."""
        words = [use.prefix] if use.prefix else []
        prefix = f"--{use.flag.long}="
        self.vetted.plan.replace(use.start, use.count, [*words, prefix + path])
        self.vetted.plan.pin(use.start, prefix, data)

    def remove_use(self, use: FlagUse) -> None:
        """Drop one flag use (combined shorts before it stay)."""
        self.vetted.plan.replace(use.start, use.count, [use.prefix] if use.prefix else [])

    def snapshot_word(self, index: int, directory: str) -> None:
        """The positional at `index` becomes the decided build context `directory`, which docker
        reads as a snapshot taken after the decision (gatekeeper.context_snapshot)."""
        self.vetted.plan.replace(index, 1, [directory])
        self.vetted.plan.snapshot(index, "", directory)

    def snapshot_value(self, use: FlagUse, key: str, directory: str) -> None:
        """`--long=KEY=directory`, the directory read as a snapshot (snapshot_word)."""
        self.vetted.plan.replace(use.start, use.count, respelled(use, f"{key}={directory}"))
        self.vetted.plan.snapshot(use.start, f"--{use.flag.long}={key}=", directory)

    def replace_word(self, index: int, word: str) -> None:
        """Replace the positional at argv index `index` (Parsed.positional_at)."""
        self.vetted.plan.replace(index, 1, [word])

    def insert_after_command(self, words: list[str]) -> None:
        """Right after the subcommand word: before any of the agent's words, so before
        `--` and the image; after what other vetters inserted there."""
        self.vetted.plan.insert(self.located.args_start, words)


def respelled(use: FlagUse, value: str) -> list[str]:
    """One flag use as `--long=value` (`-s=value` without a long name), after the
    combined shorthands written before it in the same word ("-it")."""
    long = use.flag.long
    words = [use.prefix] if use.prefix else []
    words.append(f"--{long}={value}" if long else f"-{use.flag.short}={value}")
    return words
