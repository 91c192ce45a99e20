"""[names] prefix at the API layer: the names a request gives to what the engine creates.

The rule is gatekeeper.name_prefix (shared with the CLI layer). Names given in the
query (container create and rename `name`, build `t`) are checked here before the
route's vetter; volume and network create bodies' `Name` in gatekeeper.proxy.creates,
volumes a container create makes in gatekeeper.proxy.containers, and the compose
project named by com.docker.compose.project labels in gatekeeper.proxy.labels.
"""

from __future__ import annotations

from gatekeeper.name_prefix import CONTAINER, IMAGE, PROJECT, check_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.proxy.vet import Call

# Route ident -> (query key, kind of name its values give); an absent key gives no name.
QUERY_NAMES: dict[str, tuple[str, str]] = {
    "container.create": ("name", CONTAINER),
    "container.rename": ("name", CONTAINER),
    "image.build": ("t", IMAGE),
}


def check_query_names(call: Call) -> None:
    given = QUERY_NAMES.get(call.route.ident)
    if given is None:
        return
    key, kind = given
    for value in call.query.get(key, []):
        if value or kind != CONTAINER:  # an empty container name: the engine generates one
            check_name(call.policy.name_prefix, kind, value, f"{call.route.ident} {key}=")


def check_given(call: Call, kind: str, name: str, what: str) -> None:
    """A name in a body (volume/network create) or made by the proxy (a new volume)."""
    check_name(call.policy.name_prefix, kind, name, what)


def check_compose_project(call: Call, project: str, what: str) -> None:
    """The project compose's labels name: its containers, volumes and networks are found by it."""
    check_name(call.policy.name_prefix, PROJECT, project, what)
