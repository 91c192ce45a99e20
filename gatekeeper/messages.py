"""What the agent reads: one line per denial, with the rule and what to do instead."""

from __future__ import annotations

from gatekeeper.grammar.commands import DISPLAY

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy

# Per rule: what the agent can do instead. {allowed} and {roots} are filled in.
HINTS = {
    "blocked-subcommand": "allowed: {allowed}",
    "not-allowed-subcommand": "allowed: {allowed}",
    "unknown-command": "allowed: {allowed}",
    "no-command": "usage: ssh <host> docker <command> [args]; allowed: {allowed}",
    "not-docker": "send one docker command, e.g. 'docker ps'; allowed: {allowed}",
    "shell-syntax": (
        "send one plain docker command; quote arguments with single quotes; no ; | & $ ` < > or globs"
    ),
    "unknown-flag": "only docker's own flags for this command are accepted (see 'docker <command> --help')",
    "no-grammar": "allowed: {allowed}",
    "host-path": "host paths must resolve inside {roots} (not the root itself)",
    "host-path-hidden": "use a path whose first component under {roots} is not a dot entry",
    "host-path-nested": "keep bind sources disjoint: the same directory or siblings, never one below another "
    "('docker ps -a --filter label=gatekeeper.owner' lists the containers that hold them)",
    "host-path-output": "write outputs (-o, --iidfile, --cidfile, --metadata-file) where no container binds",
    "host-path-unresolved": "try again when the engine answers",
    "host-path-mount": "ask the operator to mount the agent's area nosuid,nodev (install step area-mount)",
    "host-path-busy": "try again in a moment",
    "host-path-state": "ask the operator to fix gatekeeper's state directory ([paths] state_dir)",
    "unvetted-flag": "drop that flag",
    "image-source": "use an image from a registry the policy's [images] allows (gatekeeper policy show)",
    "flag-publish": "publish on an address and port the policy's [ports] allows, as the message shows",
    "flag-publish-all": "publish each port with -p 127.0.0.1:HOSTPORT:PORT (or the address [ports] allows)",
    "compose-ports": "publish on an address the policy's [ports] allows: ports: [\"127.0.0.1:8080:80\"]",
    "scope-owned": "act on what you created: 'docker ps -a --filter label=gatekeeper.owner={profile}'",
    "scope-unresolved": "name existing objects by name or unique ID prefix",
    "protected": "the operator protects it; leave it alone",
    "prune-unscoped": "use docker container/image/volume/network prune: they only reach your objects",
    "reserved-label": "drop that label: gatekeeper sets gatekeeper.owner itself",
    "refused-label": "use a label key of your own (e.g. com.example.team)",
    "foreign-volume": "use a new volume name: it is created as yours",
    "foreign-network": "use bridge, a network of your own (compose makes one per project) or a shared one",
    "foreign-link": "link only your own containers, or put them on a network of your own",
    "foreign-tag": "build or pull under a tag of your own",
    "top-arguments": "run 'docker top NAME' without ps options",
    "step-failed": "retry; if it persists, ask the operator",
    "disk-budget": "remove images and volumes you no longer need (docker rmi, docker image prune, "
    "docker volume rm), then try again",
}
DEFAULT_HINT = "drop or change what the message names"


# Per blocked command: what does the same job within the policy.
COMMAND_HINTS = {
    "system dial-stdio": (
        "this account does not serve the docker API (DOCKER_HOST=ssh://..., docker contexts over ssh): "
        "run 'ssh <host> docker <command>' instead"
    ),
    "container exec": (
        "read output with 'docker logs NAME', or run a fresh container with 'docker run --rm IMAGE CMD'"
    ),
    "container attach": "follow output with 'docker logs -f NAME'",
    "container cp": "mount a directory under the allowed roots with 'docker run -v DIR:/path' instead",
    "container export": "containers and images stay on this host",
    "image save": "containers and images stay on this host",
    "image push": "images stay on this host",
}


def denial_line(rule: str, reason: str, policy: Policy, canonical: str | None = None) -> str:
    hint = hint_for(rule, policy)
    instead = COMMAND_HINTS.get(canonical or "")
    if instead:
        hint = f"{instead}; {hint}"
    return f"gatekeeper: denied: {reason} (rule {rule}); {hint}"


def hint_for(rule: str, policy: Policy) -> str:
    template = HINTS.get(rule)
    if template is None:
        template = "drop that flag" if rule.startswith("flag-") else DEFAULT_HINT
    return template.format(
        allowed=", ".join(grouped(allowed_names(policy))),
        roots=", ".join(getattr(policy, "allowed_roots", ())),
        profile=policy.profile,
    )


def grouped(names: list[str]) -> list[str]:
    """'compose up', 'compose ps' -> 'compose up|ps', so the list stays one readable line."""
    groups: dict[str, list[str]] = {}
    for name in names:
        head, _, tail = name.partition(" ")
        groups.setdefault(head, []).append(tail)
    return [" ".join(filter(None, (head, "|".join(filter(None, tails))))) for head, tails in groups.items()]


def allowed_names(policy: Policy) -> list[str]:
    """Allowed commands as an agent would type them ('ps' for 'container ls')."""
    return sorted(DISPLAY.get(c, c) for c in policy.allowed)


def usage_text(policy: Policy) -> str:
    return (
        "gatekeeper: this account runs vetted docker commands only.\n"
        "usage: ssh <user>@<host> docker <command> [args]\n"
        f"allowed: {', '.join(grouped(allowed_names(policy)))}\n"
    )
