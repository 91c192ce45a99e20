"""The engine API endpoints the proxy knows, as data: method, path template, and
the docker commands of the policy that need each one.

An endpoint is forwarded only if it is in ROUTES and at least one of its
commands is allowed by the policy ([commands] allowed minus blocked): the same
policy as the CLI layer, read at the engine's API. So `exec` blocked in the
policy means POST /containers/{id}/exec is refused, and a policy that allows
`compose up` opens the endpoints compose needs for it. Anything not in the
table is refused (rule api-endpoint); some endpoints are refused whatever the
policy says, because their effect cannot be vetted from the request (REFUSED).

Templates follow moby's routers (api/server/router/{container,image,build,
network,volume,system,session}): `{id}` is one path segment (a container,
network or volume name, ID or ID prefix), `{name*}` one or more segments (an
image reference such as `registry:5000/team/app:1.2`, which may hold '/').

Each route names a vetter (gatekeeper.proxy.vet VETTERS) and the query
parameters it accepts; a parameter not listed is refused (api-query), so a
parameter a new engine adds reaches it only after someone read what it does.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

CONTAINER, IMAGE, VOLUME, NETWORK = "container", "image", "volume", "network"

# Commands that create and run containers, and the compose commands that do it
# through the API (compose speaks to the engine directly, not through the CLI).
RUNS = ("container run", "container create", "compose up", "compose create", "compose run")
STARTS = ("container start", "container restart", "container run", "compose up", "compose start",
          "compose restart", "compose run")
ATTACHES = ("container run", "container start", "container attach", "compose up", "compose run",
            "compose start")
COMPOSE_READS = ("compose ps", "compose ls", "compose logs", "compose top", "compose images",
                 "compose config", "compose up", "compose down", "compose create", "compose run",
                 "compose start", "compose stop", "compose restart", "compose kill", "compose rm",
                 "compose pull", "compose build")
BUILDS = ("image build", "compose build", "compose up", "compose create", "compose run")
PULLS = ("image pull", "container run", "container create", "compose pull", "compose up",
         "compose create", "compose run")
EVERYTHING = ("version", "system info", "container ls", "image ls", *RUNS, *COMPOSE_READS)
# Every docker command (and compose) pings first to settle the API version: open when the
# policy allows any command at all (gatekeeper.proxy.vet check_commands).
ANY_COMMAND = ("any command",)


def star_index(template: tuple[str, ...]) -> int | None:
    return next((i for i, part in enumerate(template) if part.endswith("*}")), None)


class Route:
    """One endpoint: `method` + `template` -> `ident` (for the audit log), the
    policy commands that need it, the vetter that decides it, the query keys it takes."""

    __slots__ = ("method", "template", "ident", "commands", "vetter", "query", "kind", "scope", "segments",
                 "star")

    def __init__(self, method: str, template: str, ident: str, commands: tuple[str, ...], vetter: str,
                 query: str = "", kind: str = "", scope: str = "") -> None:
        self.method = method
        self.template = template
        self.ident = ident
        self.commands = commands
        self.vetter = vetter
        self.query = frozenset(query.split())
        self.kind = kind    # the kind of object {id}/{name*} names
        self.scope = scope  # the [scope] key for it (gatekeeper.vetting.ownership)
        self.segments = tuple(template[1:].split("/"))  # "/networks/" keeps its empty last segment
        self.star = star_index(self.segments)


R = Route
LOGS_QUERY = "follow stdout stderr since until timestamps tail details"
ATTACH_QUERY = "detachKeys logs stream stdin stdout stderr"
BUILD_QUERY = (
    "dockerfile t extrahosts remote q nocache cachefrom pull rm forcerm memory memswap cpushares "
    "cpusetcpus cpusetmems cpuperiod cpuquota buildargs shmsize squash labels networkmode platform target "
    "outputs version session buildid ulimits cgroupparent isolation"
)

# fmt: off
ROUTES: tuple[Route, ...] = (
    # --- engine and system
    R("GET", "/_ping", "system.ping", ANY_COMMAND, "plain"),
    R("HEAD", "/_ping", "system.ping", ANY_COMMAND, "plain"),
    R("GET", "/version", "system.version", EVERYTHING, "plain"),
    R("GET", "/info", "system.info", EVERYTHING, "plain"),
    # Events carry every label of the objects and the operator's exec command lines
    # (exec_create: ...), which inspect redacts: only the caller's own (no [scope] key opens it).
    R("GET", "/events", "system.events", ("system events", *COMPOSE_READS, "container run"), "listing",
      "since until filters", "", "events"),
    # The disk usage lists every image, container and volume with its labels (as their lists).
    R("GET", "/system/df", "system.df", ("system df",), "listing", "type verbose"),
    # --- containers
    R("GET", "/containers/json", "container.list", ("container ls", *COMPOSE_READS), "listing",
      "all limit size filters before since", CONTAINER, "ps"),
    R("POST", "/containers/create", "container.create", RUNS, "container_create", "name platform"),
    R("POST", "/containers/prune", "container.prune", ("container prune",), "prune", "filters", CONTAINER),
    R("GET", "/containers/{id}/json", "container.inspect",
      ("container inspect", "container run", "container start", *COMPOSE_READS), "inspect", "size",
      CONTAINER, "inspect"),
    R("GET", "/containers/{id}/logs", "container.logs", ("container logs", "compose logs", "compose up"),
      "object", LOGS_QUERY, CONTAINER, "logs"),
    R("GET", "/containers/{id}/top", "container.top", ("container top", "compose top"), "top", "ps_args",
      CONTAINER, "top"),
    R("GET", "/containers/{id}/stats", "container.stats", ("container stats",), "object", "stream one-shot",
      CONTAINER, "stats"),
    R("POST", "/containers/{id}/start", "container.start", STARTS, "start", "detachKeys", CONTAINER, "start"),
    R("POST", "/containers/{id}/restart", "container.restart", ("container restart", "compose restart"),
      "start", "t signal", CONTAINER, "restart"),
    R("POST", "/containers/{id}/stop", "container.stop",
      ("container stop", "compose stop", "compose down", "compose up", "compose rm"), "object", "t signal",
      CONTAINER, "stop"),
    R("POST", "/containers/{id}/kill", "container.kill", ("container kill", "compose kill", "container run",
      "compose up"), "object", "signal", CONTAINER, "kill"),
    R("POST", "/containers/{id}/wait", "container.wait", ("container wait", "container run", "compose up",
      "compose run"), "object", "condition", CONTAINER, "wait"),
    R("POST", "/containers/{id}/attach", "container.attach", ATTACHES, "object", ATTACH_QUERY,
      CONTAINER, "attach"),
    R("GET", "/containers/{id}/attach/ws", "container.attach", ATTACHES, "object", ATTACH_QUERY,
      CONTAINER, "attach"),
    R("POST", "/containers/{id}/resize", "container.resize", ATTACHES, "object", "h w", CONTAINER, "attach"),
    R("POST", "/containers/{id}/update", "container.update", ("container update",), "container_update", "",
      CONTAINER, "update"),
    R("POST", "/containers/{id}/pause", "container.pause", ("container pause", "compose pause"), "object", "",
      CONTAINER, "stop"),
    R("POST", "/containers/{id}/unpause", "container.unpause", ("container unpause", "compose unpause"),
      "object", "", CONTAINER, "start"),
    R("POST", "/containers/{id}/rename", "container.rename", ("container rename", "compose up",
      "compose create", "compose run"), "object", "name",
      CONTAINER, "rm"),
    R("DELETE", "/containers/{id}", "container.rm", ("container rm", "compose rm", "compose down",
      "compose up", "container run"), "container_rm", "v force link", CONTAINER, "rm"),
    # --- images
    R("GET", "/images/json", "image.list", ("image ls", "compose images", "compose up"), "listing",
      "all filters shared-size digests manifests", IMAGE, "images"),
    R("POST", "/images/create", "image.pull", PULLS, "pull",
      "fromImage fromSrc repo tag message changes platform"),
    R("POST", "/images/prune", "image.prune", ("image prune",), "prune", "filters", IMAGE),
    R("GET", "/images/search", "image.search", ("search",), "search", "term limit filters"),
    R("GET", "/images/{name*}/json", "image.inspect", ("image inspect", "container inspect", *RUNS,
      *COMPOSE_READS, *BUILDS), "inspect", "manifests platform", IMAGE, "inspect"),
    R("GET", "/images/{name*}/history", "image.history", ("image history",), "object", "platform",
      IMAGE, "history"),
    R("DELETE", "/images/{name*}", "image.rm", ("image rm", "compose down"), "object",
      "force noprune platforms", IMAGE, "rmi"),
    # --- build
    R("POST", "/build", "image.build", BUILDS, "build", BUILD_QUERY),
    R("POST", "/session", "build.session", BUILDS, "plain"),
    R("POST", "/build/cancel", "build.cancel", BUILDS, "plain", "id"),
    # --- volumes
    R("GET", "/volumes", "volume.list", ("volume ls", *COMPOSE_READS), "listing", "filters"),
    R("POST", "/volumes/create", "volume.create", ("volume create", *RUNS), "volume_create"),
    R("POST", "/volumes/prune", "volume.prune", ("volume prune",), "prune", "filters", VOLUME),
    R("GET", "/volumes/{id}", "volume.inspect", ("volume inspect", *RUNS, *COMPOSE_READS), "inspect", "",
      VOLUME, "inspect"),
    R("DELETE", "/volumes/{id}", "volume.rm", ("volume rm", "compose down"), "object", "force",
      VOLUME, "rm"),
    # --- networks
    R("GET", "/networks", "network.list", ("network ls", *COMPOSE_READS), "listing", "filters"),
    R("GET", "/networks/", "network.list", ("network ls", *COMPOSE_READS), "listing", "filters"),
    R("POST", "/networks/create", "network.create", ("network create", "compose up", "compose create",
      "compose run"), "network_create"),
    R("POST", "/networks/prune", "network.prune", ("network prune",), "prune", "filters", NETWORK),
    R("GET", "/networks/{id}", "network.inspect", ("network inspect", *RUNS, *COMPOSE_READS), "inspect",
      "verbose scope", NETWORK, "inspect"),
    R("POST", "/networks/{id}/connect", "network.connect", ("network connect", "compose up",
      "compose create", "compose run"), "network_connect", "", NETWORK, "rm"),
    R("POST", "/networks/{id}/disconnect", "network.disconnect", ("network disconnect", "compose down",
      "compose up"), "network_disconnect", "", NETWORK, "rm"),
    R("DELETE", "/networks/{id}", "network.rm", ("network rm", "compose down"), "object", "", NETWORK, "rm"),
)

# First path segment (or exact path) -> why no policy can open it: the request
# does not show what the engine will do, or the effect is the data leaving.
REFUSED: dict[str, str] = {
    "/exec": "exec runs a process in a container outside anything the policy vetted",
    "/containers/{id}/exec": "exec runs a process in a container outside anything the policy vetted "
                             "(docker exec)",
    "/containers/{id}/archive": "copies files into or out of a container (docker cp); mount a directory "
                                "under the allowed roots instead",
    "/containers/{id}/export": "exports a container's whole file system (docker export)",
    "/containers/{id}/changes": "lists a container's file changes (docker diff)",
    "/commit": "commits a container to an image (docker commit); build from a Dockerfile instead",
    "/images/{name*}/push": "pushes an image to a registry (docker push)",
    "/images/{name*}/tag": "re-points a tag (docker tag); build or pull with the tag you want",
    "/images/{name*}/get": "writes images out as a tarball (docker save)",
    "/images/get": "writes images out as a tarball (docker save)",
    "/images/load": "loads images from a tarball (docker load); build or pull instead",
    "/build/prune": "build cache carries no labels, so it would remove the operator's build cache too",
    "/grpc": "BuildKit's gRPC control API carries build requests the proxy cannot read (host network, "
             "remote contexts, pushes); build through the classic API (DOCKER_BUILDKIT=0)",
    "/auth": "checks registry credentials from the engine (docker login)",
    "/distribution": "asks registries for manifests on the engine's credentials",
    "/plugins": "plugins run as root with host access",
    "/swarm": "swarm mode", "/services": "swarm services", "/tasks": "swarm tasks", "/nodes": "swarm nodes",
    "/secrets": "swarm secrets", "/configs": "swarm configs",
    "/volumes/{id}@PUT": "updates a cluster volume",
}
# fmt: on

# The tables above split once, at import, for find_route (every request looks one up):
# the routes of each method in ROUTES order, and each REFUSED template as
# (template, why, the one method it is limited to or "", its segments, its {name*} index).
ROUTES_BY_METHOD: dict[str, tuple[Route, ...]] = {
    method: tuple(route for route in ROUTES if route.method == method)
    for method in {route.method for route in ROUTES}
}
REFUSED_PARTS: tuple[tuple[str, str, str, tuple[str, ...], int | None], ...] = tuple(
    (template, why, template.partition("@")[2], parts, star_index(parts))
    for template, why in REFUSED.items()
    for parts in [tuple(template.partition("@")[0][1:].split("/"))]
)


def split_path(path: str) -> list[str]:
    """The path's segments; empty, '.' and '..' segments are refused: the engine's router
    cleans such a path into another endpoint than the one matched here."""
    if not path.startswith("/") or "\x00" in path:
        raise Denied(f"request path {path[:80]!r} is not an absolute path", rule="api-path")
    segments = path[1:].split("/")
    trailing = path == "/networks/"
    if trailing:
        segments = segments[:-1]
    if any(segment in ("", ".", "..") for segment in segments):
        # Stops: /containers/x/../../exec-style paths matched as one endpoint, served as another.
        raise Denied(f"request path {path[:80]!r} has empty, '.' or '..' segments", rule="api-path")
    return segments + ([""] if trailing else [])


def match(segments: list[str], template: tuple[str, ...], star: int | None = -1) -> dict[str, str] | None:
    """Template parameters, or None. `{name*}` takes every segment between its neighbours
    (`star`: its index, None without one, -1 to find it here)."""
    if star == -1:
        star = star_index(template)
    if star is None:
        if len(segments) != len(template):
            return None
        pairs = list(zip(template, segments, strict=True))
    else:
        after = len(template) - star - 1
        if len(segments) < len(template) or segments[:star] != list(template[:star]):
            return None
        middle = "/".join(segments[star: len(segments) - after])
        rest = list(zip(template[star + 1:], segments[len(segments) - after:], strict=True))
        pairs = [*zip(template[:star], segments[:star], strict=True), (template[star], middle), *rest]
    params = {}
    for part, segment in pairs:
        if part.startswith("{") and segment:
            params[part.strip("{}*")] = segment
        elif part != segment or part.startswith("{"):  # an empty {id} matches nothing
            return None
    return params


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for this request, or Denied (refused or unknown endpoint). A path found before
    is not searched again (the tables never change while the process runs; ~20 us of cold
    Python per request): its route, with a copy of its parameters (a vetter may rewrite them)."""
    found = FOUND.get((method, path))
    if found is not None:
        return found[0], dict(found[1])
    route, params = search_route(method, path)
    if len(FOUND) >= FOUND_KEPT:
        FOUND.clear()
    FOUND[(method, path)] = (route, dict(params))
    return route, params


FOUND: dict[tuple[str, str], tuple[Route, dict[str, str]]] = {}  # (method, path) -> what search_route found
FOUND_KEPT = 1024  # distinct paths kept; past that all are forgotten


def search_route(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """find_route's search through the refused templates and the routes."""
    segments = split_path(path)
    refused = refused_why(method, segments)[1]
    if refused:
        # Stops: endpoints whose effect no request check can confine (exec, cp, push, swarm, ...).
        raise Denied(f"{method} {path} is not allowed: {refused}", rule="api-unvetted")
    for route in ROUTES_BY_METHOD.get(method, ()):
        params = match(segments, route.segments, route.star)
        if params is not None:
            return route, params
    # Stops: any endpoint nobody vetted (new engine features, typos that reach another router).
    raise Denied(f"{method} {path} is not an endpoint the proxy forwards; the engine API is open only "
                 "for what the policy's docker commands need", rule="api-endpoint")


def refused_why(method: str, segments: list[str]) -> tuple[str, str]:
    """(the REFUSED template that matches, why), or ("", "")."""
    for template, why, only, parts, star in REFUSED_PARTS:
        if only and only != method:
            continue
        if len(parts) == 1 and segments[:1] == [parts[0]]:
            return template, why
        if len(parts) > 1 and match(segments, parts, star) is not None:
            return template, why
    return "", ""


def endpoint_of(method: str, path: str) -> str:
    """The audit's endpoint id for a request no route serves: "refused <template>" or "unknown"."""
    try:
        template = refused_why(method, split_path(path))[0]
    except Denied:
        return "unknown"
    return f"refused {template.partition('@')[0]}" if template else "unknown"
