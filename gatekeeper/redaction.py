"""Output filters: what docker printed, with other people's secrets hidden.

A Decision may name an output filter (`Decision.output_filter`); execution then
captures docker's stdout, passes it through the filter named here and prints
the result. Everything else keeps docker's stdout straight through.

* `redact-inspect` (docker inspect, container inspect, image inspect): each
  object whose label `gatekeeper.owner` is not the session's profile is
  printed with every environment value hidden (`Env: ["K=V"]` becomes
  `["K=***"]`) and every value under a key containing one of the policy's
  `[redact] keys` (case-insensitive) replaced by `***`. Objects the agent owns
  are printed as they are. An image's owner label counts only when a build record
  of the profile names its ID (gatekeeper.build_records): `built` below.
* `redact-compose-config` (docker compose config): the rendered project with
  service environment and build args values hidden, inline secret/config
  `content` hidden, and the same key rule.

Output that is not the JSON we expect is withheld (fail closed): a filter
raises ValueError and the caller prints one line instead.
"""

from __future__ import annotations

from gatekeeper.owner import CREATED_LABEL, OWNER_LABEL

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable, Container

    from gatekeeper.policy import Policy

HIDDEN = "***"
NONE_BUILT: frozenset[str] = frozenset()  # no build record known: no image is anyone's


def redact_inspect(output: bytes, owner: str, keys: tuple[str, ...],
                   built: Container[str] = NONE_BUILT) -> bytes:
    """docker inspect's JSON array, each object not owned by `owner` redacted."""
    if not output.strip():
        return output  # nothing found: docker printed only to stderr
    objects = parse(output)
    if not isinstance(objects, list):
        raise ValueError("docker inspect did not print a JSON array")
    shown = [item if owned_by(item, owner, built) else redact_tree(item, keys) for item in objects]
    return dump(shown)


def redact_compose_config(output: bytes, keys: tuple[str, ...]) -> bytes:
    """compose config's JSON project: environment, build args and inline contents hidden."""
    project = parse(output)
    if not isinstance(project, dict):
        raise ValueError("compose config did not print a JSON project")
    for service in mapping_values(project.get("services")):
        if "environment" in service:
            service["environment"] = hide_env(service["environment"])
        build = service.get("build")
        if isinstance(build, dict) and "args" in build:
            build["args"] = hide_env(build["args"])
    for section in ("secrets", "configs"):
        for entry in mapping_values(project.get(section)):
            if "content" in entry:
                entry["content"] = HIDDEN
    return dump(redact_tree(project, keys))


def owned_by(item: object, owner: str, built: Container[str] = NONE_BUILT) -> bool:
    """The label sits in .Config.Labels (containers, images) or .Labels (volumes, networks).
    An image (it has RepoTags, inspected or listed) is the owner's only when `built`, the
    IDs its build records name, holds its ID: images inherit their base's labels."""
    if not isinstance(item, dict):
        return False
    config = item.get("Config")
    for labels in (config.get("Labels") if isinstance(config, dict) else None, item.get("Labels")):
        if isinstance(labels, dict) and labels.get(OWNER_LABEL) == owner:
            if "RepoTags" in item:
                return isinstance(item.get("Id"), str) and item["Id"] in built
            # A container (it has a State) inherits its image's labels: only the ones its
            # create set count (gatekeeper.owner.proven_labels; the image is not at hand here,
            # callers that resolve one check it too).
            return "State" not in item or labels.get(CREATED_LABEL) == owner
    return False


def owned_lists(policy: Policy) -> frozenset[str]:
    """The listed kinds ("containers", "images") the policy's [scope] ps / images lets the
    agent see only its own of (gatekeeper.redacting_engine leaves the others out)."""
    scoped = (("containers", "ps"), ("images", "images"))
    return frozenset(kind for kind, key in scoped if policy.scope_of(key) == "owned")


# The lists of a kind in the disk usage (GET /system/df).
DISK_USAGE_KEYS = {"containers": "Containers", "images": "Images"}


def owned_only(value: object, kinds: frozenset[str], owner: str,
               built: Container[str] = NONE_BUILT) -> object:
    """The list without the objects of `kinds` ("containers", "images") that `owner` does not
    own (owned_by: a container by its create's labels, an image by its build records), as
    [scope] ps / images = "owned" lists them at both layers."""
    if not kinds:
        return value
    if isinstance(value, list):
        return [item for item in value if owned_by(item, owner, built)]
    if not isinstance(value, dict):
        raise ValueError("the engine sent something that is not a list")
    kept = dict(value)
    for kind in kinds:
        items = value.get(DISK_USAGE_KEYS[kind])
        if isinstance(items, list):
            kept[DISK_USAGE_KEYS[kind]] = [item for item in items if owned_by(item, owner, built)]
        elif items is not None:
            raise ValueError(f"the engine's {DISK_USAGE_KEYS[kind]} is not a list")
    return kept


# GET /system/df (`docker system df -v --format '{{json .}}'`): the engine's lists of images,
# containers and volumes, each object with its labels, as the lists of their own endpoints.
DISK_USAGE_LISTS = ("Images", "Containers", "Volumes")


def redacted_listing(value: object, owner: str, keys: tuple[str, ...],
                     built: Container[str] = NONE_BUILT) -> object:
    """A listing's answer with each object not owned by `owner` redacted: a list (containers,
    images, networks), {"Volumes": [...]} (volumes) or the disk usage {"Images": [...],
    "Containers": [...], "Volumes": [...], ...}, its build cache entries without their
    descriptions. Any other shape is a ValueError (withheld)."""
    if isinstance(value, list):
        return [item if owned_by(item, owner, built) else redact_tree(item, keys) for item in value]
    if not isinstance(value, dict):
        raise ValueError("the engine sent something that is not a list")
    names = [name for name in ("Volumes", *DISK_USAGE_LISTS) if name in value]
    if not names:
        raise ValueError("the engine sent something that is not a list")
    shown = dict(value)
    for name in names:
        items = value[name]
        if items is None:
            continue  # the engine's null for an empty (or not asked for) list
        if not isinstance(items, list):
            raise ValueError(f"the engine's {name} is not a list")
        shown[name] = [item if owned_by(item, owner, built) else redact_tree(item, keys) for item in items]
    cache = value.get("BuildCache")
    if isinstance(cache, list):
        # Stops: the disk usage naming the operator's build steps ("mount / from exec /bin/sh -c
        # ... $TOKEN"), which [scope] history keeps to the images the agent may use; sizes stay.
        shown["BuildCache"] = [{**entry, "Description": HIDDEN} if isinstance(entry, dict)
                               and entry.get("Description") else entry for entry in cache]
    return shown


def redact_tree(node: object, keys: tuple[str, ...]) -> object:
    """A copy of `node`: values of Env keys as K=***, values under matching keys hidden."""
    if isinstance(node, list):
        return [redact_tree(item, keys) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, object] = {}
    for key, value in node.items():
        if key.lower() == "env":
            out[key] = hide_env(value)
        elif matches(key, keys):
            out[key] = hide_leaves(value)
        elif key == "Options" and isinstance(value, dict):
            options = redact_tree(value, keys)  # a key naming a secret hides its whole value
            assert isinstance(options, dict)  # noqa: S101 - redact_tree keeps a dict a dict
            out[key] = {name: hide_option_pairs(item, keys) for name, item in options.items()}
        else:
            out[key] = redact_tree(value, keys)
    return out


def hide_option_pairs(value: object, keys: tuple[str, ...]) -> object:
    """A driver option holding `k=v,k=v` (the local driver's `o=username=u,password=...` for
    cifs/nfs, mount options): each pair whose key matches a [redact] word as k=***."""
    if not isinstance(value, str) or "=" not in value:
        return value
    shown = []
    for pair in value.split(","):
        name, eq, _ = pair.partition("=")
        shown.append(f"{name}={HIDDEN}" if eq and matches(name, keys) else pair)
    return ",".join(shown)


def matches(key: str, keys: tuple[str, ...]) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in keys)


def hide_env(value: object) -> object:
    """["K=V", ...] -> ["K=***", ...]; {"K": "V"} -> {"K": "***"}; a bare "K" stays
    (docker passes the caller's value then, which is not in the output)."""
    if isinstance(value, list):
        return [hide_assignment(item) for item in value]
    if isinstance(value, dict):
        return {name: None if item is None else HIDDEN for name, item in value.items()}
    return hide_leaves(value)


def hide_assignment(item: object) -> object:
    if not isinstance(item, str):
        return hide_leaves(item)
    name, eq, _ = item.partition("=")
    return f"{name}={HIDDEN}" if eq else item


def hide_leaves(value: object) -> object:
    """Keep the shape (lists, maps, empty values), hide every non-empty scalar."""
    if isinstance(value, list):
        return [hide_leaves(item) for item in value]
    if isinstance(value, dict):
        return {name: hide_leaves(item) for name, item in value.items()}
    if value is None or value == "" or isinstance(value, bool):
        return value
    return HIDDEN


def mapping_values(value: object) -> list[dict[str, object]]:
    if not isinstance(value, dict):
        return []
    return [item for item in value.values() if isinstance(item, dict)]


def parse(output: bytes) -> object:
    """docker's JSON (UTF-8), through gatekeeper.json_codec: `import json` (and `re`) would
    cost every inspect several milliseconds."""
    from gatekeeper.json_codec import loads

    try:
        return loads(output.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("docker printed something that is not JSON") from None


def dump(value: object) -> bytes:
    """Indented like docker's own output (json.dumps(indent=4, ensure_ascii=False))."""
    from gatekeeper.json_codec import indented

    return (indented(value) + "\n").encode()


def output_filter(name: str, policy: Policy, built: Container[str] = NONE_BUILT) -> Callable[[bytes], bytes]:
    """The bytes -> bytes function for the filter `name` under this policy (and its profile)."""
    keys = policy.redact_keys
    owner = policy.profile
    if name == "redact-inspect":
        return lambda output: redact_inspect(output, owner, keys, built)
    if name == "redact-compose-config":
        return lambda output: redact_compose_config(output, keys)
    raise ValueError(f"unknown output filter {name!r}")
