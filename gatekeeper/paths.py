"""The host-path rule: every host path docker would read or write must
resolve (relative to the workdir, following symlinks) to a strict descendant
of an allowed root whose first component below the root is not hidden.

Only that first component matters: the root's top-level dot entries (.ssh,
.profile, .docker, gatekeeper's own state directory) are what login machinery
and gatekeeper read; deeper dot components (.env, .git, node_modules/.bin)
are ordinary project files.

Comparison is on resolved paths with a trailing separator, so '/home/ai-workerX'
never passes for '/home/ai-worker' and '/home/ai-worker' itself is not inside.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy
    from gatekeeper.world import PathResolver


def resolve_host_path(value: str, what: str, policy: Policy, world: PathResolver) -> str:
    if not value:
        raise Denied(f"{what}: empty host path", rule="host-path")
    if "\x00" in value:
        raise Denied(f"{what}: NUL in host path", rule="host-path")
    import posixpath  # a host path: os comes with it (a command without one does not import os)

    joined = posixpath.join(policy.workdir, value)
    try:
        resolved = world.realpath(joined)
    except Denied as denial:  # the world refused to guess (unreadable component, device node)
        raise Denied(f"{what}: {denial.message}", rule=denial.rule) from None
    root = containing_root(resolved, policy, world)
    if root is None:
        where = "the allowed root itself (use a directory below it)" if is_a_root(
            resolved, policy, world) else "outside the allowed roots"
        raise Denied(
            f"{what}: host path {value!r} resolves to {resolved!r}, {where} "
            f"({', '.join(policy.allowed_roots)})",
            rule="host-path",
        )
    hidden = hidden_component(resolved, root)
    if hidden:
        raise Denied(
            f"{what}: host path {value!r} resolves to {resolved!r}, which is inside "
            f"the root's hidden entry {hidden!r} (the root's own dot files and dot directories "
            "are off limits; dot entries deeper down are fine)",
            rule="host-path-hidden",
        )
    return resolved


def require_inert_mount(resolved: str, what: str, world: PathResolver) -> None:
    """A bind source must sit on a mount where set-user-ID bits and device nodes do nothing.

    Stops: root in the agent's container runs `chown 0 x; chmod 4755 x` or `mknod x b 8 0`
    inside the bind, and the agent's own account (a shell, anything run at its login)
    executes the root program or opens the host's disk through the node on the host. The
    kernel pins this for as long as the mount stands: nosuid,nodev hold at every later
    start and restart, whatever the container writes in between.
    """
    if not world.inert_mount(resolved):
        raise Denied(
            f"{what}: {resolved!r} is on a mount without nosuid,nodev, where a container's root could "
            "leave set-user-ID programs or device nodes for the host; bind sources must be on the "
            "agent's area mounted nosuid,nodev (the operator's install step area-mount; "
            "docs/operating.md)",
            rule="host-path-mount",
        )


def is_a_root(resolved: str, policy: Policy, world: PathResolver) -> bool:
    return any(world.realpath(root) == resolved for root in policy.allowed_roots)


def containing_root(resolved: str, policy: Policy, world: PathResolver) -> str | None:
    """The resolved allowed root that strictly contains `resolved`, if any."""
    for root in policy.allowed_roots:
        real_root = world.realpath(root)
        prefix = real_root.rstrip("/") + "/"
        if resolved.startswith(prefix) and len(resolved) > len(prefix):
            return real_root
    return None


def hidden_component(resolved: str, root: str) -> str:
    """The first component below the root if it is a dot entry, else "".
    Stops: writes to ~/.ssh/rc, ~/.profile, ~/.docker/... and gatekeeper's state."""
    first = resolved[len(root.rstrip("/")) + 1 :].split("/", 1)[0]
    return first if first.startswith(".") else ""


def normpath(path: str) -> str:
    """posixpath.normpath of a str, without importing posixpath (which imports os, ~0.9 ms
    on every ForceCommand call: the policy's roots are normalised at each load). The same
    steps as CPython's own pure-Python version; a property test keeps the two equal."""
    if not path:
        return "."
    # POSIX keeps exactly two leading slashes; one, or three and more, become one.
    initial_slashes = 2 if path.startswith("//") and not path.startswith("///") else int(path.startswith("/"))
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not initial_slashes and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * initial_slashes + "/".join(parts) or "."
