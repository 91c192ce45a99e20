"""What a refused compose step leaves of its project, named in the refusal (issue 12, layout b).

In layouts (a) and (c) the CLI layer judges a whole `docker compose up` before anything runs.
In layout (b) the proxy sees compose's requests one by one: the project's networks and volumes,
then each container's create, network connects and start. A refusal half-way (a container
create, or a connect to a network the agent may not join) left what compose had made before it
(networks, volumes, containers created and never started), and the refusal said nothing of it.
Compose does the same after an engine error; the proxy cannot tell which of those objects this
command made (a volume may hold data from an earlier `up`), so it removes none of them: the
refusal names them, as the engine lists them now, and the command that removes them.

    with_project_leftovers(vetter)      a vetter whose refusals name the project's objects
    describe_leftovers(...) -> str      the clause (pure)

Only the caller's own objects are listed (the owner label filters), of the project the refused
request names: a create's com.docker.compose.project label, or the connected container's (when
that container is the caller's).
"""

from __future__ import annotations

import json

from gatekeeper.errors import Denied
from gatekeeper.label_rules import owned_labels
from gatekeeper.owner import OWNER_LABEL
from gatekeeper.proxy import objects

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from gatekeeper.proxy.contract import ApiVerdict
    from gatekeeper.proxy.vet import Call

PROJECT_LABEL = "com.docker.compose.project"
# kind -> the listing that holds it (each filtered by owner and project labels)
LISTINGS = (("container", "/containers/json?all=1&filters="), ("network", "/networks?filters="),
            ("volume", "/volumes?filters="))
NAMED = 10  # objects named per kind; more are counted


def with_project_leftovers(vetter: Callable[[Call], ApiVerdict]) -> Callable[[Call], ApiVerdict]:
    """`vetter`, whose refusal of a compose project's request names what the project keeps."""

    def vetted(call: Call) -> ApiVerdict:
        try:
            return vetter(call)
        except Denied as refusal:
            try:
                what = project_leftovers(call)
            except Exception:  # noqa: BLE001 - the refusal stands as it is, whatever the listing did
                what = None
            if what is None:
                raise
            raise Denied(f"{refusal.message}; {what}", rule=refusal.rule) from None

    return vetted


def project_leftovers(call: Call) -> str | None:
    """The clause for the request's compose project, None when it names none or keeps nothing."""
    project = project_of(call)
    if not project:
        return None
    found: dict[str, list[str]] = {}
    for kind, listing in LISTINGS:
        target = listing + objects.filters_query({"label": [*owned_labels(call.profile, kind),
                                                            f"{PROJECT_LABEL}={project}"]})
        items = objects.listing(call.engine, target, f"your {kind}s")
        found[kind] = [shown_item(kind, item) for item in items]
    return describe_leftovers(project, found)


def project_of(call: Call) -> str:
    """A container create's project label; a network connect's: the connected container's."""
    try:
        body = json.loads(call.request.body or b"{}")
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if call.route.ident == "container.create":
        return label_of(body)
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        return ""
    found = objects.inspect(call.engine, "container", container) or {}
    config = found.get("Config")
    if not isinstance(config, dict) or label_of(config, OWNER_LABEL) != call.profile:
        return ""  # not the caller's container: nothing of its project is named
    return label_of(config)


def label_of(config: dict[str, Any], key: str = PROJECT_LABEL) -> str:
    labels = config.get("Labels")
    value = labels.get(key) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else ""


def shown_item(kind: str, item: dict[str, Any]) -> str:
    if kind == "container":
        names = item.get("Names") or [str(item.get("Id", ""))[:12]]
        return f"{objects.shown(str(names[0]).lstrip('/'))} ({objects.shown(item.get('State') or '?')})"
    return objects.shown(item.get("Name", ""))


def describe_leftovers(project: str, found: dict[str, list[str]]) -> str | None:
    """One clause naming what `project` keeps now (kind -> names), and how to remove it."""
    parts = []
    for kind, names in found.items():
        if names:
            more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
            parts.append(f"{kind}{'s' if len(names) > 1 else ''} {', '.join(sorted(names)[:NAMED])}{more}")
    if not parts:
        return None
    shown = objects.shown(project)
    return (f"compose project {shown!r} keeps what it made before this refusal: {'; '.join(parts)} "
            f"(`docker compose -p {shown} down` removes its containers and networks, `down -v` its "
            "volumes too)")


def removed_volumes(engine: object, names: tuple[str, ...]) -> str | None:
    """Remove the volumes the proxy made for a create that was then refused after its decision
    (the budget, the audit write): made for it a moment ago, used by nothing (the engine refuses
    to remove a volume in use: such a one stays, and is named). The clause for the refusal."""
    remove = getattr(engine, "remove_volume", None)
    if remove is None or not names:
        return None
    gone: list[str] = []
    kept: list[str] = []
    for name in names:
        status, _ = remove(name)
        (gone if status in (200, 204) else kept).append(objects.shown(name))
    parts = [f"{volumes(gone)}, made for this create, removed"] if gone else []
    if kept:
        parts.append(f"{volumes(kept)}, made for this create, kept (in use)")
    return "; ".join(parts)


def volumes(names: list[str]) -> str:
    return f"volume{'s' if len(names) > 1 else ''} {', '.join(names)}"
