"""The API layer's decision: one request of a proxy client in, an ApiVerdict out.

    vet_api_request(request, policy, engine) -> ApiVerdict
    transform_response(name, status, body, request) -> bytes

The order, for every request:
1. the endpoint: method + path against gatekeeper.proxy.endpoints (refused
   outright, unknown, or known), then its query keys against the route's list;
2. the policy: at least one of the docker commands that need the endpoint is
   allowed ([commands]), the same policy the CLI layer reads;
3. the route's vetter (VETTERS below): objects named are resolved and judged
   by ownership (gatekeeper.proxy.objects), bodies by gatekeeper.proxy.bodies.
The verdict always carries the request-target to forward, rebuilt from what was
checked (the version prefix, the path with resolved IDs, the checked query),
never the client's raw bytes. Any exception is a denial (internal-error).

Pure apart from `engine` (engine.get_json, and engine.realpath for host paths):
no files, clock or environment here.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote

from gatekeeper.errors import Denied
from gatekeeper.owner import OWNER_LABEL
from gatekeeper.proxy import objects
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict
from gatekeeper.proxy.endpoints import ANY_COMMAND, Route, endpoint_of, find_route
from gatekeeper.proxy.leftovers import with_project_leftovers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from gatekeeper.engine_objects import Target
    from gatekeeper.policy import Policy
    from gatekeeper.proxy.contract import EngineQueries

REDACT_OBJECT = "redact-inspect-object"
REDACT_ALWAYS = "redact-inspect-always"  # an object that is not the caller's whatever its labels say
REDACT_BUILT = "redact-inspect-built"  # an image: as it is only if it is the one proven the caller's (its ID)
REDACT_LISTING = "redact-listing"  # a list of objects, each not the caller's redacted
REDACT_OWNED_LISTING = "redact-listing-owned"  # and the kinds [scope] keeps to the caller's own left out
# Vetters that read the request body; every other endpoint must come without one.
BODY_VETTERS = frozenset({"container_create", "container_update", "network_connect", "network_disconnect",
                          "volume_create", "network_create", "build"})
EMPTY_BODIES = (b"", b"{}", b"null")
# The oldest API version whose request shapes the tables here describe; older ones took
# e.g. a HostConfig in the body of POST /containers/{id}/start.
MIN_VERSION = (1, 24)
# Query keys that may repeat (build tags); any other key given twice is ambiguous.
REPEATABLE = frozenset({"t"})


class Call:
    """One request being decided: what the vetters read and what they forward."""

    __slots__ = ("request", "policy", "engine", "route", "params", "query", "ctx", "body", "afterwards",
                 "made_volumes")

    def __init__(self, request: ApiRequest, policy: Policy, engine: EngineQueries, route: Route,
                 params: dict[str, str]) -> None:
        self.request = request
        self.policy = objects.CallerPolicy(policy, request.profile)
        self.engine = engine
        self.route = route
        self.params = dict(params)  # template parameter -> value forwarded (resolved IDs)
        self.query = {key: list(values) for key, values in request.query.items()}
        self.ctx = objects.RuleContext(self.policy, objects.HostPaths(engine)).as_context()
        self.body: bytes | None = None  # a rewritten body to forward
        self.afterwards: tuple[str, ...] | None = None  # a step once the engine said 200 (proxy.pulls)
        self.made_volumes: list[str] = []  # volumes this decision made (proxy.containers)

    @property
    def profile(self) -> str:
        return self.request.profile

    def one(self, key: str, default: str = "") -> str:
        values = self.query.get(key)
        return values[-1] if values else default

    def target(self) -> str:
        """The request-target to forward: version prefix, path from the template, query."""
        parts = []
        for part in self.route.segments:
            if part.startswith("{"):
                parts.append(quote(self.params[part.strip("{}*")], safe=":@/"))
            else:
                parts.append(part)
        path = "/" + "/".join(parts)  # "/networks/" keeps its empty last segment
        prefix = f"/v{self.request.version}" if self.request.version else ""
        query = "&".join(f"{quote(key, safe='')}={quote(value, safe='')}"
                         for key, values in self.query.items() for value in values)
        return prefix + path + ("?" + query if query else "")

    def allow(self, response: str | None = None) -> ApiVerdict:
        verdict = ApiVerdict(True, "allowed", "", self.route.ident, self.target(), self.body, response,
                             afterwards=self.afterwards)
        verdict.made_volumes = tuple(self.made_volumes)
        return verdict


def vet_api_request(request: ApiRequest, policy: Policy, engine: EngineQueries) -> ApiVerdict:
    """Allow or deny one API request of `request.profile` under `policy`."""
    endpoint = "unknown"
    try:
        route, params = find_route(request.method, request.path)
        endpoint = route.ident
        check_version(request)
        check_body(request, route)
        check_query(request, route)
        check_commands(request, route, policy)
        call = Call(request, policy, engine, route, params)
        check_given_names(call)
        return VETTERS[route.vetter](call)
    except Denied as denial:
        if endpoint == "unknown":
            endpoint = endpoint_of(request.method, request.path)
        return ApiVerdict(False, denial.rule, denial.message, endpoint, status=denial_status(request))
    except Exception as error:  # noqa: BLE001 - a bug in a vetter is a denial, audited as one
        why = f"internal error while vetting ({type(error).__name__}: {str(error)[:200]})"
        return ApiVerdict(False, "internal-error", why, endpoint)


def check_given_names(call: Call) -> None:
    """[names] prefix for names given in the query (gatekeeper.proxy.names)."""
    from gatekeeper.proxy.names import QUERY_NAMES, check_query_names

    if call.route.ident in QUERY_NAMES:
        check_query_names(call)


def denial_status(request: ApiRequest) -> int:
    """403; 404 for a plugin's inspect: `docker inspect NAME` asks for each kind of object in
    turn (plugins among them) and goes on only past a "not found". Plugins are refused, so
    the proxy shows none: the agent's inspect ends as on an engine without that plugin."""
    segments = request.path.split("/")
    if request.method in ("GET", "HEAD") and len(segments) >= 4 and segments[1] == "plugins" \
            and segments[-1] == "json":
        return 404
    return 403


def check_version(request: ApiRequest) -> None:
    if request.version is None:
        return
    major, _, minor = request.version.partition(".")
    if not (major.isdigit() and minor.isdigit()) or (int(major), int(minor)) < MIN_VERSION:
        # Stops: old request shapes (a HostConfig sent with start) the tables here do not describe.
        raise Denied(f"API version {request.version!r} is not allowed: 1.24 or later "
                     "(the docker CLI and compose send their own)", rule="api-version")


def check_body(request: ApiRequest, route: Route) -> None:
    if route.vetter not in BODY_VETTERS and request.body.strip() not in EMPTY_BODIES:
        # Stops: a body the endpoint's vetter never reads but the engine might.
        raise Denied(f"{request.method} {request.path} takes no request body here", rule="api-body")


def check_query(request: ApiRequest, route: Route) -> None:
    for key, values in request.query.items():
        if key not in route.query:
            # Stops: parameters nobody vetted (an engine may add one that changes what the call does).
            raise Denied(f"{request.method} {request.path}: query parameter {key!r} is not allowed here "
                         f"(allowed: {', '.join(sorted(route.query)) or 'none'})", rule="api-query")
        if len(values) > 1 and key not in REPEATABLE:
            # Stops: a check reading one copy while the engine acts on another.
            raise Denied(f"{request.method} {request.path}: query parameter {key!r} given twice",
                         rule="api-query")


def check_commands(request: ApiRequest, route: Route, policy: Policy) -> None:
    """The endpoint is open when a docker command that needs it is allowed by the policy."""
    allowed = policy.allowed
    if any(command in allowed for command in route.commands):
        return
    if route.commands is ANY_COMMAND and allowed:
        return  # the version negotiation every docker command starts with
    blocked = [c for c in route.commands if c in getattr(policy, "blocked", frozenset())]
    what = f"{request.method} {request.path} ({route.ident}, what 'docker {route.commands[0]}' does)"
    if blocked:
        raise Denied(f"{what} is not allowed: the policy blocks 'docker {blocked[0]}' ([commands] blocked)",
                     rule="blocked-subcommand")
    raise Denied(f"{what} is not allowed: none of the docker commands that need it is in the policy's "
                 f"[commands] allowed ({', '.join(route.commands[:4])})", rule="not-allowed-subcommand")


# ---------------------------------------------------------------- vetters


def vet_plain(call: Call) -> ApiVerdict:
    """Endpoints that name no object and change nothing the agent does not own."""
    return call.allow()


def vet_listing(call: Call) -> ApiVerdict:
    """Lists: under [scope] ps/images = "owned" only the agent's containers and images are
    listed (volumes and networks always all); the objects not the agent's are answered with
    the values under [redact] keys hidden (their labels), as inspect answers them: docker's
    `--format '{{.Labels}}'` would print them."""
    from gatekeeper.label_rules import scope
    from gatekeeper.redaction import owned_lists

    if call.route.scope and scope(call.ctx, call.route.scope) == "owned":
        filters = parse_filters(call.one("filters"))
        add_filters(call, filters, owned_filters(call, filters))
    kinds = OWNED_LISTS.get(call.route.ident, frozenset()) & owned_lists(call.policy)
    if kinds:
        return call.allow(response=owned_listing_name(call, kinds))
    return call.allow(response=redaction_name(call, REDACT_LISTING))


# The lists in which the engine's label filter cannot tell the caller's own: an image built FROM
# the agent's inherits its owner label (only a build record proves one the agent's), and the
# disk usage takes no filter. The containers' list is filtered by the create's labels already.
OWNED_LISTS = {"image.list": frozenset({"images"}), "system.df": frozenset({"containers", "images"})}


def owned_listing_name(call: Call, kinds: frozenset[str]) -> str:
    """REDACT_OWNED_LISTING with the kinds to keep to the caller's own, the image IDs its build
    records name ("-": none) and the [redact] keys."""
    from gatekeeper.proxy.images import built_images

    built = sorted(built_images(call)) if "images" in kinds else []
    return (f"{REDACT_OWNED_LISTING} {','.join(sorted(kinds))} {','.join(built) or '-'} "
            f"{keys_json(tuple(call.policy.redact_keys))}")


def owned_filters(call: Call, filters: dict[str, list[str]]) -> dict[str, list[str]]:
    """The filters that keep a list to the caller's own (docker ANDs the keys; `filters`: the
    caller's): the owner labels of the route's kind; of events, those of the kind its types may
    be (gatekeeper.label_rules.events_kind), image events only of the images the caller's build
    records name (label_rules.image_event_ids)."""
    from gatekeeper.label_rules import events_kind, image_event_ids, owned_labels

    if call.route.ident != "system.events":
        return {"label": owned_labels(call.profile, call.route.kind)}
    types = filters.get("type", [])
    kind = events_kind(types)
    if kind:
        return {"label": owned_labels(call.profile, kind)}
    from gatekeeper.proxy.images import built_images

    ids = image_event_ids(types, filters.get("image", []), built_images(call) if "image" in types else set())
    return {"label": owned_labels(call.profile, kind), **({"image": ids} if ids else {})}


def add_filters(call: Call, filters: dict[str, list[str]], extra: dict[str, list[str]]) -> None:
    """The query's filters: the caller's `filters` with `extra` added (a key's values are ORed)."""
    filters = dict(filters)
    for key, values in extra.items():
        filters[key] = [*filters.get(key, []), *values]
    from urllib.parse import unquote

    call.query["filters"] = [unquote(objects.filters_query(filters))]


def parse_filters(text: str) -> dict[str, list[str]]:
    """docker's filters JSON, either form: {"k": ["v"]} or {"k": {"v": true}}."""
    import json

    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise Denied("query parameter 'filters' is not JSON", rule="api-query") from None
    if not isinstance(value, dict):
        raise Denied("query parameter 'filters' is not a JSON object", rule="api-query")
    out: dict[str, list[str]] = {}
    for key, values in value.items():
        if isinstance(values, dict) and all(v is True for v in values.values()):
            out[str(key)] = [str(v) for v in values]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            out[str(key)] = list(values)
        else:
            raise Denied(f"filter {key!r}: expected a list of strings or a map of strings to true",
                         rule="api-query")
    return out


def vet_object(call: Call) -> ApiVerdict:
    """An endpoint acting on the one object its path names."""
    judge_path_object(call)
    return call.allow()


# Endpoints that stop or delete what they name: [protect] guards them.
DESTRUCTIVE = frozenset({"container.stop", "container.restart", "container.kill", "container.rm",
                         "container.pause", "container.rename", "image.rm", "volume.rm", "network.rm"})


def judge_path_object(call: Call, prefix: str = "") -> Target:
    """Resolve {id}/{name*}, apply [scope] and [protect], forward containers and networks by ID.
    `prefix`: the object asked at that API version (objects.inspect)."""
    from gatekeeper.label_rules import check_owned, check_unprotected, scope

    route, ctx = call.route, call.ctx
    key = "id" if "id" in call.params else "name"
    word = call.params[key]
    target = objects.resolve(call.engine, route.kind, word, prefix)
    if scope(ctx, route.scope) == "owned" and not owned_or_pulled(call, target):
        check_owned(ctx, target, route.scope, route.kind)
    if route.ident in DESTRUCTIVE:
        check_unprotected(ctx, target, route.kind)
    if route.kind in ("container", "network"):
        call.params[key] = target.ident  # act on exactly what was checked
    return target


def owned_or_pulled(call: Call, target: Target) -> bool:
    if objects.owned(target, call.profile):
        if call.route.ident == "image.rm":
            call.afterwards = ("build-forget", target.ident)  # once it is gone, its records go too
        return True
    if call.route.ident == "image.history":
        from gatekeeper.proxy.images import check_image_use

        # Stops: the operator's build steps and ARG values read from its image's history.
        check_image_use(call, target.ident, "image history of")  # any image the agent may use
        return True
    if call.route.ident == "image.rm":
        from gatekeeper.proxy.images import pulled_by_agent

        # Stops: removing the operator's image that came back with the ID and tag of the
        # agent's removed pull (its stale record pins another LastTagTime).
        if pulled_by_agent(call, target.ident, target.names, target.tagged):
            call.afterwards = ("pull-forget", target.ident)  # once it is gone, its records go too
            return True
    return False


def vet_inspect(call: Call) -> ApiVerdict:
    """Inspect: under [scope] inspect = "owned" only the agent's; otherwise anyone's, with the
    answer redacted unless it carries the agent's owner label (transform_response)."""
    from gatekeeper.label_rules import scope

    # The container is asked at the client's API version: its answer is the one the client's
    # request would get, and the transport may send it (redacted) instead of asking again.
    prefix = f"/v{call.request.version}" if call.request.version else ""
    word = call.params.get("id") or call.params.get("name", "")
    if scope(call.ctx, call.route.scope) == "owned":
        target: Target | None = judge_path_object(call, prefix if call.route.kind == "container" else "")
    elif call.route.kind == "container":
        target = objects.lookup(call.engine, "container", word, prefix)
    elif call.route.kind == "image":
        target = objects.lookup(call.engine, "image", word)
    else:
        return call.allow(response=redaction_name(call))
    if call.route.kind == "image":
        return vet_image_inspect(call, target)
    # A container whose owner label came from its image is redacted whatever it says.
    always = target is not None and not objects.owned(target, call.profile)
    verdict = call.allow(response=redaction_name(call, REDACT_ALWAYS if always else REDACT_OBJECT))
    if call.route.kind == "container" and call.request.method == "GET" and not call.query:
        verdict.answered_by = objects.question_target("container", word, prefix)
    return verdict


def vet_image_inspect(call: Call, target: Target | None) -> ApiVerdict:
    """An image's answer as it is only when it is the one the decision proved the caller's
    (a build record names its ID: gatekeeper.build_records); any other redacted, whatever its
    owner label says (the operator's image built FROM the agent's inherits it)."""
    if target is None or not objects.owned(target, call.profile):
        return call.allow(response=redaction_name(call, REDACT_ALWAYS))
    return call.allow(response=f"{REDACT_BUILT} {target.ident} {keys_json(tuple(call.policy.redact_keys))}")


def redaction_name(call: Call, transform: str = REDACT_OBJECT) -> str:
    return f"{transform} {keys_json(tuple(call.policy.redact_keys))}"


@functools.lru_cache(maxsize=64)
def keys_json(keys: tuple[object, ...]) -> str:
    """The [redact] keys as a verdict's transform names them (JSON), written once per policy's list."""
    import json

    return json.dumps([str(k).lower() for k in keys])


def vet_top(call: Call) -> ApiVerdict:
    from gatekeeper.vetting.ownership import TOP_PS_ARGUMENTS

    arguments = call.one("ps_args")
    if arguments and arguments not in TOP_PS_ARGUMENTS:
        # Stops: the agent's words reaching the host's ps(1), run as root by the daemon.
        raise Denied(f"top with ps_args {arguments!r} is not allowed: dockerd hands them to the host's ps "
                     f"as root; use none or one of {', '.join(sorted(TOP_PS_ARGUMENTS))}",
                     rule="top-arguments")
    return vet_object(call)


def vet_start(call: Call) -> ApiVerdict:
    """start/restart: the container's bind sources must still keep the disjoint-bind invariant,
    and a stopped one must fit under [limits] max_running. Every refusal of these start-time
    checks (the container already judged the caller's), an internal error in them included,
    goes through start_refused. The verdict names the container (ApiVerdict.starts): a start
    refused after the decision (its record could not be written) is settled the same way."""
    target = judge_path_object(call)
    from gatekeeper.proxy.binds import check_start_binds

    try:
        check_start_binds(call, target.ident)
        check_running_room(call, target.ident)
    except Denied as refusal:
        raise start_refused(call.engine, target.ident, refusal) from None
    except Exception as error:  # noqa: BLE001 - a failed check refuses the start, settled as any refusal
        why = f"internal error while checking the start ({type(error).__name__}: {str(error)[:200]})"
        raise start_refused(call.engine, target.ident, Denied(why, rule="internal-error")) from None
    verdict = call.allow()
    verdict.starts = target.ident
    return verdict


def check_running_room(call: Call, ident: str) -> None:
    """The caller's running containers plus this one (if it is not running) within the cap.
    The CLI layer also counts what its sessions have in flight; the proxy counts what runs."""
    from gatekeeper.vetting.limits import caps_of

    cap = caps_of(call.policy).max_running
    if not cap:
        return
    found = objects.inspect(call.engine, "container", ident) or {}
    state = found.get("State") or {}
    if isinstance(state, dict) and state.get("Running") is True:
        return  # a restart of a running container adds none
    target = "/containers/json?filters=" + objects.filters_query({"label": [f"{OWNER_LABEL}={call.profile}"]})
    running = len(objects.listing(call.engine, target, "your running containers"))
    if running + 1 > cap:
        # Stops: more of the agent's containers running at once than the operator allows. The cap is
        # kept at the start, not the create (an API create does not say whether a start follows):
        # a refused `docker run` leaves its container created, never started (start_refused says so).
        raise Denied(f"{running} of your containers are running and the cap is {cap} (policy [limits] "
                     "max_running): stop some first", rule="limit-running")


def start_refused(engine: EngineQueries, ident: str, refusal: Denied) -> Denied:
    """The refusal of a start, naming what became of the container (never_started_fate)."""
    what = never_started_fate(engine, ident)
    return refusal if what is None else Denied(f"{refusal.message}; {what}", rule=refusal.rule)


def never_started_fate(engine: EngineQueries, ident: str) -> str | None:
    """What became of a container whose start was refused, if it never started: in layout (b)
    `docker run` created it before this start. One whose create asked for AutoRemove (`run --rm`)
    is removed, as the engine removes an --rm container whose start fails: the client waits for
    that removal and hung when the proxy refused the start instead (the engine saw no failure).
    Any other stays created. None for a container that ran before (left as it was, nothing to add)."""
    found = objects.inspect(engine, "container", ident) or {}
    state, host = found.get("State"), found.get("HostConfig")
    if not (isinstance(state, dict) and state.get("Status") == "created"
            and str(state.get("StartedAt") or "").startswith("0001-")):
        return None
    name = str(found.get("Name") or ident[:12]).lstrip("/")
    if isinstance(host, dict) and host.get("AutoRemove") is True and removed(engine, ident):
        return (f"container {name!r} (--rm, never started) was removed, as the engine removes one "
                "whose start fails")
    return f"container {name!r} stays created, not started (docker start it then, or docker rm it)"


def removed(engine: EngineQueries, ident: str) -> bool:
    """DELETE the never-started --rm container with its anonymous volumes (force=1&v=1: what the
    engine's own removal after a failed start does); False if the engine did not remove it."""
    remove = getattr(engine, "remove_container", None)
    if remove is None:
        return False
    status, _ = remove(ident)
    return status in (200, 204)


def vet_container_rm(call: Call) -> ApiVerdict:
    if call.one("link") not in ("", "0", "false", "False"):
        # Stops: link=1 names a link (/parent/alias), not a container: nothing we resolved.
        raise Denied("DELETE /containers/{id}?link=1 (removing a legacy link) is not allowed",
                     rule="api-query")
    return vet_object(call)


def vet_prune(call: Call) -> ApiVerdict:
    """Prune only the agent's objects: owner label forced, [protect] labels excluded,
    [protect] names refuse the prune (a name cannot be a filter)."""
    from gatekeeper.label_rules import owned_labels, protect

    kind = call.route.kind
    labels = protect(call.ctx, "labels")
    refuse_protected_owned(call, kind)
    if kind == "image":
        refuse_unproven_images(call)
        call.afterwards = ("records-sweep",)  # records that can never count again (proxy.pulls)
    add_filters(call, parse_filters(call.one("filters")),
                {"label": owned_labels(call.profile, kind), **({"label!": labels} if labels else {})})
    return call.allow()


def refuse_unproven_images(call: Call) -> None:
    """The owner label also selects images that inherited it (the operator's build FROM the
    agent's image): if one the prune could remove (dangling; with dangling=false, any) is not
    named by the caller's build records (gatekeeper.build_records), the prune is refused."""
    from gatekeeper.label_rules import owned_labels
    from gatekeeper.proxy.images import built_images

    dangling = parse_filters(call.one("filters")).get("dangling", ["true"])
    every = any(value.lower() in ("false", "0") for value in dangling)
    filters = {"label": owned_labels(call.profile, "image"), **({} if every else {"dangling": ["true"]})}
    listed = objects.listing(call.engine, LISTINGS["image"] + objects.filters_query(filters), "your images")
    labelled = [str(item.get("Id")) for item in listed]
    built = built_images(call) if labelled else set()
    stranger = next((ident for ident in labelled if ident not in built), None)
    if stranger is not None:
        # Stops: the prune removing the operator's image that inherited the agent's owner label.
        raise Denied(f"prune could remove image {stranger[7:19]}, which carries your owner label but is not "
                     "one you built (an image built FROM yours inherits the label); remove your images "
                     "by name", rule="scope-owned")


LISTINGS = {"container": "/containers/json?all=1&filters=", "image": "/images/json?filters=",
            "volume": "/volumes?filters=", "network": "/networks?filters="}


def refuse_protected_owned(call: Call, kind: str) -> None:
    from fnmatch import fnmatchcase

    from gatekeeper.label_rules import PROTECT_KEYS, owned_labels, protect

    patterns = protect(call.ctx, PROTECT_KEYS[kind])
    # The engine ANDs label! filters (an object is kept only when it carries every one of them):
    # with two or more [protect] labels, each is looked for here instead.
    labels = protect(call.ctx, "labels")
    labels = labels if len(labels) > 1 else []
    if not patterns and not labels:
        return
    target = LISTINGS[kind] + objects.filters_query({"label": owned_labels(call.profile, kind)})
    for item in objects.listing(call.engine, target, f"your {kind}s"):
        names = listed_names(kind, item) or ["?"]
        hit = next((p for p in patterns for n in names if fnmatchcase(n, p)), None)
        if hit is not None:
            raise Denied(f"prune could remove protected {kind} {names[0]!r} ([protect] "
                         f"{PROTECT_KEYS[kind]} {hit!r}); remove the others by name", rule="protected")
        carried = item.get("Labels")
        label = next((spec for spec in labels if isinstance(carried, dict) and carries(carried, spec)), None)
        if label is not None:
            # Stops: a prune removing an object with one of several protected labels (the engine
            # keeps only objects that carry all of them).
            raise Denied(f"prune could remove protected {kind} {names[0]!r} ([protect] labels {label!r}: "
                         "the engine keeps only objects carrying every protected label); remove the "
                         "others by name", rule="protected")


def carries(labels: dict[str, Any], spec: str) -> bool:
    """`key=value` or `key`, as the engine's label filter reads one."""
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or str(labels[key]) == value)


def listed_names(kind: str, item: dict[str, Any]) -> list[str]:
    if kind == "container":
        return [str(n).lstrip("/") for n in item.get("Names") or []]
    if kind == "image":
        tags = [str(t) for t in item.get("RepoTags") or []]
        return tags + [t.rpartition(":")[0] for t in tags if ":" in t]
    return [str(item.get("Name", ""))]


def lazy(module: str, name: str) -> Callable[[Call], ApiVerdict]:
    """A vetter in another module, imported when a request needs it."""

    def vetter(call: Call) -> ApiVerdict:
        from importlib import import_module

        return getattr(import_module(f"gatekeeper.proxy.{module}"), name)(call)  # type: ignore[no-any-return]  # a getattr'd vetter

    return vetter


# Route.vetter -> the function that decides it.
VETTERS: dict[str, Callable[[Call], ApiVerdict]] = {
    "plain": vet_plain,
    "listing": vet_listing,
    "object": vet_object,
    "inspect": vet_inspect,
    "top": vet_top,
    "start": vet_start,
    "container_rm": vet_container_rm,
    "prune": vet_prune,
    # A refused create or connect of a compose project names what the project keeps (layout b).
    "container_create": with_project_leftovers(lazy("containers", "vet_container_create")),
    "container_update": lazy("containers", "vet_container_update"),
    "network_connect": with_project_leftovers(lazy("containers", "vet_network_connect")),
    "network_disconnect": lazy("containers", "vet_network_disconnect"),
    "pull": lazy("images", "vet_pull"),
    "search": lazy("images", "vet_search"),
    "build": lazy("images", "vet_build"),
    "volume_create": lazy("creates", "vet_volume_create"),
    "network_create": lazy("creates", "vet_network_create"),
}


# ---------------------------------------------------------------- responses


def transform_response(name: str, status: int, body: bytes, request: ApiRequest) -> bytes:
    """Apply the response transform `name` (from a verdict) to the engine's answer."""
    transform, _, argument = name.partition(" ")
    if transform not in (REDACT_OBJECT, REDACT_ALWAYS, REDACT_LISTING, REDACT_OWNED_LISTING, REDACT_BUILT):
        return error_body(f"unknown response transform {transform!r}")
    if status != 200:
        return body  # the engine's error (no such object): nothing of the object in it
    if transform == REDACT_LISTING:
        return redact_listing(body, request.profile, argument)
    if transform == REDACT_OWNED_LISTING:
        kinds, built, keys = argument.split(" ", 2)
        return owned_listing(body, request.profile, keys, frozenset(kinds.split(",")),
                             frozenset(built.split(",")) - {"-"})
    if transform == REDACT_BUILT:
        ident, _, keys = argument.partition(" ")
        return redact_object(body, request.profile, keys, frozenset({ident}))
    return redact_object(body, "" if transform == REDACT_ALWAYS else request.profile, argument)


def redact_object(body: bytes, profile: str, keys_json: str, built: frozenset[str] = frozenset()) -> bytes:
    """One inspect object: as it is if it carries the caller's owner label, else with
    environment values and secret-looking keys hidden (gatekeeper.redaction)."""
    import json

    from gatekeeper.proxy.engine import LAST_PARSED
    from gatekeeper.redaction import owned_by, redact_tree

    # The decision's own question, answered by this very body (Proxy.decide_on_loop): parsed
    # there already (json_codec.loads of its UTF-8: what json.loads gives for such a body).
    known = LAST_PARSED.value_of(body)
    try:
        keys = redaction_keys(keys_json)
        obj = known[0] if known is not None else json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return error_body("the engine's answer is not JSON; withheld")
    if not isinstance(obj, dict):
        return error_body("the engine's answer is not an object; withheld")
    if profile and owned_by(obj, profile, built):  # "": redacted whatever it says
        return body  # the agent's own: byte for byte what the engine sent
    from gatekeeper.redacting_engine import go_json

    return go_json(redact_tree(obj, keys))


@functools.lru_cache(maxsize=64)
def redaction_keys(keys_json: str) -> tuple[str, ...]:
    """The [redact] keys a verdict's transform names (JSON), read once per distinct list."""
    import json

    return tuple(str(k) for k in json.loads(keys_json or "[]"))


@functools.lru_cache(maxsize=64)
def listing_needles(keys_json: str) -> re.Pattern[bytes] | None:
    """What a listing must contain for redaction to change it: a [redact] key, `"env"` or
    `"description"`, as one pattern (one scan of the lowered body instead of one per key);
    None when a key is not ASCII (such a listing is always parsed)."""
    keys = redaction_keys(keys_json)
    if not all(key.isascii() for key in keys):
        return None
    words = [key.encode() for key in keys] + [b'"env"', b'"description"']
    return re.compile(b"|".join(re.escape(word) for word in words))


def redact_listing(body: bytes, profile: str, keys_json: str) -> bytes:
    """A list of containers, images or networks (volumes: {"Volumes": [...]}; the disk usage:
    its Images, Containers and Volumes): each object not the caller's with the values under
    [redact] keys hidden (its labels, gatekeeper.redaction). A list in which no key could
    match is the engine's answer byte for byte (most lists: cheap)."""
    import json

    from gatekeeper.redaction import redacted_listing

    try:
        keys = redaction_keys(keys_json)
        needles = listing_needles(keys_json)
    except ValueError:
        return error_body("the redaction keys are not JSON; withheld")
    if needles is not None and needles.search(body.lower()) is None:
        return body  # nothing in it a key could match (bytes.lower() folds ASCII only)
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return error_body("the engine's answer is not JSON; withheld")
    try:
        shown = redacted_listing(value, profile, keys)
    except ValueError:
        return error_body("the engine's answer is not a list; withheld")
    from gatekeeper.redacting_engine import go_json

    return go_json(shown)


def owned_listing(body: bytes, profile: str, keys_json: str, kinds: frozenset[str],
                  built: frozenset[str]) -> bytes:
    """A list under [scope] ps / images = "owned": the objects of `kinds` not the caller's left
    out (an image: its ID among `built`, its build records'), the others not the caller's
    redacted, as the CLI layer's redacting engine answers it."""
    import json

    from gatekeeper.redaction import owned_only, redacted_listing

    try:
        keys = redaction_keys(keys_json)
        value = owned_only(json.loads(body), kinds, profile, built)
        shown = redacted_listing(value, profile, keys, built)
    except (ValueError, UnicodeDecodeError):
        return error_body("the engine's answer is not a list; withheld")
    from gatekeeper.redacting_engine import go_json

    return go_json(shown)


def error_body(message: str) -> bytes:
    import json

    return json.dumps({"message": f"gatekeeper: {message}"}).encode() + b"\n"
