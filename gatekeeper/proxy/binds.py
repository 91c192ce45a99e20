"""Bind sources at the API layer: the CLI layer's path rule and disjoint-bind
invariant (gatekeeper.paths, gatekeeper.vetting.binds), fed from the engine's API.

E, the set the invariant keeps disjoint, is every bind source of every container
carrying the owner label (any profile, any state), read with one listing
(GET /containers/json?all=1 with the label filter: each entry has its Mounts).
A create's bind sources are checked against E and each other; a start or restart
re-checks the container's own sources against E (rule 3), as the CLI layer does.
"""

from __future__ import annotations

import json

from gatekeeper.owner import OWNER_LABEL
from gatekeeper.vetting.binds import (
    Holder,
    check_bind,
    check_existing,
    check_within_command,
    holders_of,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.proxy.vet import Call


def owned_holders(call: Call) -> list[Holder]:
    """A Holder per bind source of every container with the owner label (lexical and resolved)."""
    from gatekeeper.proxy import objects

    target = "/containers/json?all=1&filters=" + objects.filters_query({"label": [OWNER_LABEL]})
    holders: list[Holder] = []
    for item in objects.listing(call.engine, target, "the containers that hold bind sources"):
        holders += holders_of(json.dumps(as_inspected(item)), call.ctx.world)
    return holders


def as_inspected(item: dict[str, Any]) -> dict[str, Any]:
    """A list entry in the shape holders_of reads (Id, Name, Config.Labels, Mounts)."""
    names = item.get("Names") or []
    return {"Id": item.get("Id"), "Name": names[0] if names else "",
            "Config": {"Labels": item.get("Labels") or {}}, "Mounts": item.get("Mounts") or []}


def check_new_binds(call: Call, binds: list[tuple[str, str]]) -> None:
    """Rule 1 for a create: no new source nested in another of the same body or of E."""
    if not binds:
        return
    check_within_command(binds, [])
    held = owned_holders(call)
    for path, what in binds:
        check_bind(path, what, held, [])


def check_start_binds(call: Call, ident: str) -> None:
    """Rule 3: the container's own sources (made before the rule, or by hand) keep rule 1;
    and each still passes the path rule where it resolves now."""
    held = owned_holders(call)
    own = [h for h in held if h.container == ident]
    check_still_allowed(call, own)
    check_existing(own, held)


def check_still_allowed(call: Call, own: list[Holder]) -> None:
    """The engine resolves each bind source again at this start, as root: a source the agent
    (a shell as its account, a build output) swapped for a symlink since the create is
    judged by the path rule where it points now."""
    from gatekeeper.paths import require_inert_mount, resolve_host_path

    for holder in own:
        if holder.path:
            # Stops: mv src src.old; ln -s /etc src; docker start: host /etc mounted read-write.
            resolve_host_path(holder.path, f"{holder.who}'s bind source", call.policy,
                              call.ctx.world)
            # Stops: the area remounted without nosuid,nodev since the create.
            require_inert_mount(holder.path, f"{holder.who}'s bind source", call.ctx.world)
