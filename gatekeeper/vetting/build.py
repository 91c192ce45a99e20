"""Family rules for `docker build` (also image build, builder build, buildx
build/b): the build context positional. Flags are vetted one by one in
gatekeeper.vetting.flag_checks and the grammar tables.

The context is a host directory the CLI reads and sends to the builder, so it
follows the host path rule and docker gets its resolved form. `-` (a
Dockerfile or tarball on stdin) is fine, and so is `-f -` (the Dockerfile on
stdin: the grammar's path-or-stdin check passes it on as typed). Remote contexts are refused: the
legacy builder runs `git clone` on the host, and buildx treats a local
directory named like a URL differently from one that is not.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.grammar.pflag import Parsed
    from gatekeeper.vetting.context import Context

# What buildx/docker take for a remote context instead of a local directory.
REMOTE_PREFIXES = ("http://", "https://", "git://", "git@", "github.com/", "ssh://")


def vet_build(ctx: Context) -> None:
    """The classic builder only; exactly one context: stdin, or a host directory under the allowed roots."""
    if help_requested(ctx.parsed):
        return  # cobra prints the help and builds nothing
    if ctx.located.spelled.split()[0] == "buildx":
        # Stops: BuildKit on the engine's socket (layout c, with the buildx plugin installed):
        # secrets and the SSH agent a step gets are no part of its cache key, so the agent's
        # layer made with secrets of its choosing is what the operator's build of the step
        # reuses; and the `# syntax=` frontend fetches beyond what the checks read.
        raise Denied(f"'docker {ctx.located.spelled}' runs BuildKit whatever DOCKER_BUILDKIT says: its "
                     "cache keys neither the secrets nor the SSH agent a step is given, and its frontends "
                     "fetch beyond what gatekeeper reads; use 'docker build' (the classic builder)",
                     rule="build-buildkit")
    where = ctx.parsed.positional_at
    if len(where) != 1:
        raise Denied(
            f"'docker {ctx.located.spelled}' needs exactly one build context, got {len(where)}",
            rule="build-context-count",
        )
    context = ctx.parsed.positionals[0]
    if context == "-":
        return
    if context.startswith(REMOTE_PREFIXES) or "://" in context:
        raise Denied(
            f"build context {context!r} is not allowed: remote contexts are fetched by the builder "
            "or by git on the host; clone into the work directory first",
            rule="build-remote-context",
        )
    # Stops: the directory swapped for a symlink to one outside the roots (a container bound above
    # it) after this check and before the CLI walks it: docker reads a snapshot of the checked one.
    ctx.snapshot_word(where[0], ctx.host_path(context, "build context"))


def help_requested(parsed: Parsed) -> bool:
    from gatekeeper.grammar.pflag import bool_value

    return any(use.flag.long == "help" and bool_value(use) for use in parsed.uses)
