"""Labels in API bodies: the CLI layer's label rules (gatekeeper.vetting.ownership
check_label: nothing under gatekeeper., nothing [labels] refused, printable ASCII
keys), then the caller's owner label added to what the engine creates.

Compose talks to the engine itself and labels what it creates with its own
com.docker.compose.* keys, which [labels] refuses to the agent (a container posing
as a service of the operator's project). At the API layer those keys are accepted
when the project they name is the agent's: every container, network and volume
that carries that project label now is labelled with the caller's profile (the
CLI layer's compose rule, gatekeeper.vetting.compose_ownership).
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.label_rules import check_label
from gatekeeper.owner import CREATED_LABEL, OWNER_LABEL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.proxy.vet import Call

# The CLI layer's claim token on what `run` starts (gatekeeper.vetting.running): accepted so
# the CLI layer works in front of the proxy. A forged token can only hide the caller's own
# in-flight claims from the CLI layer's count; the proxy counts running containers itself.
START_LABEL = "gatekeeper.start"
HEX = frozenset("0123456789abcdef")
COMPOSE_PREFIX = "com.docker.compose."
PROJECT_LABEL = "com.docker.compose.project"
PROJECT_LISTINGS = {"container": "/containers/json?all=1&filters=", "network": "/networks?filters=",
                    "volume": "/volumes?filters="}


def owner_labelled(call: Call, labels: object, what: str, created: bool = False) -> dict[str, str]:
    """The agent's labels, checked, with `gatekeeper.owner=<profile>` set (and for a
    container, `created`, also gatekeeper.created=<profile>: gatekeeper.owner.proven_labels).

    The caller's own owner label is accepted as given (the CLI layer, deployed in front of
    the proxy, sends the label it injected); any other value of it is refused like every
    other gatekeeper.* label."""
    if labels is None:
        labels = {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise Denied(f"{what}s must be a map of strings", rule="api-body")
    compose = any(key.lower().startswith(COMPOSE_PREFIX) for key in labels)
    if compose:
        check_compose_project(call, labels.get(PROJECT_LABEL), what)
        from gatekeeper.proxy.names import check_compose_project as check_project_name

        check_project_name(call, str(labels[PROJECT_LABEL]), f"{what}s {PROJECT_LABEL}")
    for key, value in labels.items():
        if key in (OWNER_LABEL, CREATED_LABEL) and value == call.profile:
            continue
        if key == START_LABEL and is_start_token(value):
            continue  # the CLI layer's running count (gatekeeper.vetting.running) marks its claims
        if compose and key.startswith(COMPOSE_PREFIX) and all(" " < ch <= "~" for ch in key):
            continue  # the project is the agent's (checked above)
        check_label(call.ctx, f"{key}={value}", what)
    return {**labels, OWNER_LABEL: call.profile, **({CREATED_LABEL: call.profile} if created else {})}


def check_compose_project(call: Call, project: object, what: str) -> None:
    """Compose labels only for a project whose every object is the caller's."""
    from gatekeeper.proxy import objects

    if not isinstance(project, str) or not project:
        # Stops: compose.* labels without a project (a service label meant for someone else's project).
        raise Denied(f"{what}s: com.docker.compose.* labels need {PROJECT_LABEL}", rule="refused-label")
    query = objects.filters_query({"label": [f"{PROJECT_LABEL}={project}"]})
    for kind, listing in PROJECT_LISTINGS.items():
        for item in objects.listing(call.engine, listing + query, f"the {kind}s of project {project!r}"):
            owner = (item.get("Labels") or {}).get(OWNER_LABEL)
            if owner != call.profile:
                whose = f"owned by {owner!r}" if owner else "not yours"
                # Stops: a container posing as a service of the operator's compose project.
                raise Denied(f"{what}s name compose project {project!r}, which has a {kind} {whose}; "
                             "use a project name of your own (docker compose -p NAME)", rule="refused-label")


def is_start_token(value: str) -> bool:
    return len(value) == 16 and set(value) <= HEX
