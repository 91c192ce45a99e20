"""Engine objects named in API requests: resolved by the engine, judged by the CLI
layer's ownership rules (gatekeeper.vetting.ownership, namespaces, volumes).

A name or ID prefix in a request is resolved here with one GET of the object
(the engine resolves it exactly as it will for the action), and the request is
forwarded by the full ID that was checked, so a name re-pointed in between
changes nothing. The rules themselves (owner label, [scope], [protect],
[shared]) are the CLI layer's functions, called with a small stand-in for the
CLI layer's context: they read only `ctx.policy` (and `ctx.world.realpath`).
"""

from __future__ import annotations

from urllib.parse import quote

from gatekeeper.engine_objects import Target, plain_names
from gatekeeper.errors import Denied
from gatekeeper.owner import OWNER_LABEL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.policy import Policy
    from gatekeeper.proxy.contract import EngineQueries
    from gatekeeper.vetting.context import Context

# kind -> the GET that inspects one object by name, ID or ID prefix
INSPECT_PATHS = {
    "container": "/containers/{}/json",
    "image": "/images/{}/json",
    "volume": "/volumes/{}",
    "network": "/networks/{}",
}
MESSAGE_LIMIT = 200


def CallerPolicy(policy: Policy, profile: str) -> Policy:  # was a class: callers unchanged
    """The loaded policy, seen as the caller's profile: the proxy serves several
    profiles with one policy, the ownership rules read `policy.profile`."""
    return policy.for_profile(profile)


class HostPaths:
    """The world the path rule asks (gatekeeper.paths): the engine's `realpath`."""

    __slots__ = ("engine",)

    def __init__(self, engine: EngineQueries) -> None:
        self.engine = engine

    def realpath(self, path: str) -> str:
        resolve = getattr(self.engine, "realpath", None)
        if resolve is None:
            raise Denied("this proxy cannot resolve host paths, so it cannot vet them",
                         rule="host-path-unreadable")
        return str(resolve(path))

    def inert_mount(self, path: str) -> bool:
        """nosuid,nodev where the engine will mount `path` (gatekeeper.paths.require_inert_mount);
        False (refused) when the engine side cannot say."""
        ask = getattr(self.engine, "inert_mount", None)
        return bool(ask(path)) if ask is not None else False


class RuleContext:
    """What the CLI layer's rule functions read of their context: `policy`, and
    `world.realpath` (HostPaths). Handed to them as a Context (`as_context`)."""

    __slots__ = ("policy", "world")

    def __init__(self, policy: Policy, world: HostPaths) -> None:
        self.policy = policy
        self.world = world

    def as_context(self) -> Context:
        """The CLI layer's rule functions are typed for its Context; the ones the API
        layer calls read only `policy` and `world.realpath` (tests/test_proxy_*)."""
        return self  # type: ignore[return-value]  # duck-typed as above (no typing.cast per request)


def engine_get(engine: EngineQueries, target: str, what: str) -> tuple[int, object]:
    try:
        status, value = engine.get_json(target)
    except Exception as error:  # noqa: BLE001 - an engine that does not answer: nothing is resolved
        raise Denied(f"cannot resolve {what}: the engine did not answer ({type(error).__name__})",
                     rule="scope-unresolved") from None
    return status, value


def inspect(engine: EngineQueries, kind: str, word: str, prefix: str = "") -> dict[str, Any] | None:
    """The engine's inspect object for `word` (name, ID or prefix), None if there is none.
    `prefix` ("/v1.50"): asked at the client's API version (question_target), so that the
    answer is the one the client's own inspect would get; an engine that does not answer
    that version with 200 or 404 is asked without it, as every other question is."""
    path = question_target(kind, word, "")
    status, value = engine_get(engine, prefix + path, f"{kind} {word!r}")
    if prefix and status not in (200, 404):
        status, value = engine_get(engine, path, f"{kind} {word!r}")
    if status == 404:
        return None
    if status != 200 or not isinstance(value, dict):
        why = value.get("message") if isinstance(value, dict) else None
        raise Denied(f"cannot resolve {kind} {word!r}: {shown(why or f'engine status {status}')}",
                     rule="scope-unresolved")
    return value


def target_of(kind: str, word: str, obj: dict[str, Any]) -> Target:
    """An inspect object as the CLI layer's Target (ID, names, labels)."""
    if kind == "container":
        ident, names, labels = obj.get("Id"), plain_names(obj.get("Name")), config_labels(obj)
    elif kind == "image":
        ident, names, labels = obj.get("Id"), plain_names(obj.get("RepoTags") or []), config_labels(obj)
    elif kind == "volume":
        ident, names, labels = obj.get("Name"), plain_names(obj.get("Name")), obj.get("Labels")
    else:
        ident, names, labels = obj.get("Id"), plain_names(obj.get("Name")), obj.get("Labels")
    if not isinstance(ident, str) or not ident:
        raise Denied(f"cannot resolve {kind} {word!r}: the engine's answer has no ID",
                     rule="scope-unresolved")
    labels = labels if isinstance(labels, dict) else {}
    target = Target(word, ident, names, {str(k): str(v) for k, v in labels.items()})
    if kind == "image":
        target.tagged = tag_time(obj)
    return target


def tag_time(image: dict[str, Any]) -> str:
    """An image's LastTagTime (its inspect object's Metadata) as a pull record's pin
    (gatekeeper.owner.PULLED_TAG_TIME); "" none."""
    from gatekeeper.owner import tag_time_pin

    metadata = image.get("Metadata")
    return tag_time_pin(metadata.get("LastTagTime") if isinstance(metadata, dict) else None)


def config_labels(obj: dict[str, Any]) -> object:
    config = obj.get("Config")
    return config.get("Labels") if isinstance(config, dict) else None


def question_target(kind: str, word: str, prefix: str) -> str:
    """The GET inspect(engine, kind, word, prefix) asks first."""
    return prefix + INSPECT_PATHS[kind].format(quote(word, safe=":@"))


def resolve(engine: EngineQueries, kind: str, word: str, prefix: str = "") -> Target:
    """The one object `word` names now, or Denied: acting on a name nobody can check is refused."""
    obj = inspect(engine, kind, word, prefix)
    if obj is None:
        raise Denied(f"no such {kind}: {word!r}", rule="scope-unresolved")
    return proven(engine, kind, target_of(kind, word, obj), obj)


def lookup(engine: EngineQueries, kind: str, word: str, prefix: str = "") -> Target | None:
    obj = inspect(engine, kind, word, prefix)
    return None if obj is None else proven(engine, kind, target_of(kind, word, obj), obj)


def proven(engine: EngineQueries, kind: str, target: Target, obj: dict[str, Any]) -> Target:
    """A container's owner label counts only when its create set it, not its image
    (gatekeeper.owner.proven_labels): one more inspect, of the container's image by ID.
    An image's only when a build record of that owner names its ID (proven_image)."""
    if kind == "image" and OWNER_LABEL in target.labels:
        return proven_image(engine, target)
    if kind != "container" or OWNER_LABEL not in target.labels:
        return target
    from gatekeeper.owner import proven_labels

    image = obj.get("Image")
    remembered = getattr(engine, "image_labels_known", None)  # the proxy's ImageLabels, if any
    image_labels = remembered(image) if remembered is not None and isinstance(image, str) else None
    if image_labels is None:
        found = inspect(engine, "image", image) if isinstance(image, str) and image else None
        labels = config_labels(found) if found is not None else None
        image_labels = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else \
            ({} if found is not None else None)
    target.labels = proven_labels(target.labels, image_labels)
    return target


def proven_image(engine: EngineQueries, target: Target) -> Target:
    """The image's owner label kept only when a build record of the profile it names names the
    image's ID (gatekeeper.build_records): the operator's image built FROM the agent's carries
    the agent's label too. One question: the records of that owner for that ID."""
    from gatekeeper.owner import BUILT_BY, BUILT_IMAGE, proven_image_labels

    owner = target.labels[OWNER_LABEL]
    query = filters_query({"label": [f"{BUILT_BY}={owner}", f"{BUILT_IMAGE}={target.ident}"]})
    records = listing(engine, "/volumes?filters=" + query, f"the build records of image {target.ident[:19]}")
    built = {target.ident} if any(is_record(item, owner, target.ident) for item in records) else set()
    target.labels = proven_image_labels(target.labels, target.ident, built)
    return target


def is_record(volume: dict[str, Any], owner: str, ident: str) -> bool:
    """A build record (its name and both labels: the engine's filter, checked again)."""
    from gatekeeper.build_records import RECORD_PREFIX, record_labels

    labels = volume.get("Labels")
    return str(volume.get("Name", "")).startswith(RECORD_PREFIX) and isinstance(labels, dict) \
        and all(labels.get(key) == value for key, value in record_labels(owner, ident).items())


def owned(target: Target, profile: str) -> bool:
    """(A container Target from resolve/lookup carries its owner label only when proven.)"""
    return target.labels.get(OWNER_LABEL) == profile


def listing(engine: EngineQueries, target: str, what: str) -> list[dict[str, Any]]:
    status, value = engine_get(engine, target, what)
    if status != 200:
        raise Denied(f"cannot list {what} (engine status {status})", rule="scope-unresolved")
    items = value.get("Volumes") if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise Denied(f"cannot list {what}: unexpected answer", rule="scope-unresolved")
    return [item for item in items if isinstance(item, dict)]


def filters_query(filters: dict[str, list[str]]) -> str:
    """`filters` as the engine reads it, in its map form {"label": {"k=v": true}}."""
    import json

    return quote(json.dumps({key: dict.fromkeys(values, True) for key, values in filters.items()},
                            separators=(",", ":")))


def shown(text: object) -> str:
    from gatekeeper.printable import printable

    return printable(str(text), MESSAGE_LIMIT)
