"""A stand-in for the proxy decision's EngineQueries: canned engine objects answered
the way dockerd resolves them (full ID, name, unique ID prefix; image tags), the
listings with label filters, and host paths resolved through a table of symlinks."""

from __future__ import annotations

import json
import posixpath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gatekeeper.errors import Denied
from tests.fakes import below_any

OWNER = "gatekeeper.owner"
CREATED = "gatekeeper.created"


def cid(ch: str) -> str:
    return ch * 64


def container(ident: str, name: str, labels: dict[str, str], binds: tuple[str, ...] = (),
              running: bool = False, image: str = "sha256:" + "2" * 64) -> dict:
    """A container of `image` (postgres:15, no labels, unless told); an owner label is the
    create's (with gatekeeper.created beside it) unless `labels` says otherwise."""
    mounts = [{"Type": "bind", "Source": b, "Destination": "/data"} for b in binds]
    if OWNER in labels:
        labels = {CREATED: labels[OWNER], **labels}
    return {"Id": ident, "Name": "/" + name, "Image": image,
            "Config": {"Labels": labels, "Env": ["PASSWORD=hunter2"]},
            "HostConfig": {"Binds": [f"{b}:/data" for b in binds]}, "Mounts": mounts,
            "State": {"Running": running}}


def image(ident: str, tags: list[str], labels: dict[str, str]) -> dict:
    return {"Id": "sha256:" + ident, "RepoTags": tags, "Config": {"Labels": labels, "Env": ["TOKEN=x"]}}


MINE = {OWNER: "default"}
TAGGED = "2026-11-30T10:00:00.123456789Z"  # alpine's LastTagTime: its pull record's pin

CONTAINERS = [
    container(cid("a"), "web", MINE, ("/home/ai-worker/proj",), running=True),
    container(cid("b"), "db", {}, ("/srv/db",)),
    container(cid("c"), "other", {OWNER: "alice"}, ("/home/ai-worker/alice",)),
    container(cid("d"), "vital", MINE),
    # made before the disjoint-bind rule: its source lies below web's
    container(cid("e"), "legacy", MINE, ("/home/ai-worker/proj/sub",)),
    container(cid("9"), "comp", {**MINE, "com.docker.compose.project": "app"}),
    container(cid("f"), "ops-db-1", {"com.docker.compose.project": "ops"}),
]
IMAGES = [
    image(cid("1"), ["myapp:latest"], MINE),
    image(cid("2"), ["postgres:15"], {}),
    {**image(cid("3"), ["alpine:latest"], {}), "RepoDigests": ["alpine@sha256:" + cid("4")],
     "Metadata": {"LastTagTime": TAGGED}},
    # the operator's pull of the ID and tag of the agent's pull, removed since: the agent's record
    # of it (below) pins the LastTagTime the agent's pull gave the image, not this one's
    {**image("ab" * 32, ["redis:7"], {}), "Metadata": {"LastTagTime": "2026-11-30T11:00:00.5Z"}},
]
VOLUMES = [
    {"Name": "myvol", "Driver": "local", "Options": None, "Labels": MINE},
    {"Name": "theirvol", "Driver": "local", "Options": None, "Labels": {}},
    {"Name": "sharedvol", "Driver": "local", "Options": None, "Labels": {}},
    {"Name": "nfsvol", "Driver": "local", "Options": {"type": "nfs", "device": ":/x"}, "Labels": MINE},
    {"Name": "gatekeeper-pull-0001", "Driver": "local", "Options": None,
     "Labels": {"gatekeeper.pulled-by": "default", "gatekeeper.pulled-image": "sha256:" + cid("3"),
                "gatekeeper.pulled-tag": "alpine:latest", "gatekeeper.pulled-tag-time": TAGGED}},
    {"Name": "gatekeeper-pull-0003", "Driver": "local", "Options": None,
     "Labels": {"gatekeeper.pulled-by": "default", "gatekeeper.pulled-image": "sha256:" + "ab" * 32,
                "gatekeeper.pulled-tag": "redis:7", "gatekeeper.pulled-tag-time": TAGGED}},
    # myapp:latest is the agent's build (gatekeeper.build_records), not only labelled as its
    {"Name": "gatekeeper-built-0001", "Driver": "local", "Options": None,
     "Labels": {"gatekeeper.built-by": "default", "gatekeeper.built-image": "sha256:" + cid("1")}},
]
NETWORKS = [
    {"Id": cid("5"), "Name": "mynet", "Labels": MINE, "Driver": "bridge"},
    {"Id": cid("6"), "Name": "opsnet", "Labels": {}, "Driver": "bridge"},
    {"Id": cid("7"), "Name": "sharednet", "Labels": {}, "Driver": "bridge"},
    {"Id": cid("8"), "Name": "bridge", "Labels": {}, "Driver": "bridge"},
    {"Id": "0" * 64, "Name": "host", "Labels": {}, "Driver": "host"},
]
LINKS = {"/home/ai-worker/link": "/etc", "/home/ai-worker/up": "/home"}


class FakeEngine:
    """EngineQueries over the canned objects above; records every GET."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.containers = [dict(c) for c in CONTAINERS]
        self.suid_mounts: tuple[str, ...] = ()  # mounts without nosuid,nodev (default: none)
        self.made: list[dict[str, Any]] = []  # volumes create_volume made

    def get_json(self, target: str) -> tuple[int, object]:
        self.asked.append(target)
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path.startswith("/v") and path[2:3].isdigit():  # /v1.47/..., not /volumes: as the engine reads it
            path = "/" + path.split("/", 2)[2]
        query = parse_qs(parts.query)
        filters = json.loads(query["filters"][0]) if "filters" in query else {}
        if path == "/containers/json":
            every = query.get("all", ["0"])[0] not in ("0", "false")
            return 200, [summary(c) for c in self.containers if matches(c["Config"]["Labels"], filters)
                         and (every or c["State"]["Running"])]
        if path == "/images/json":
            return 200, [i for i in IMAGES if matches(i["Config"]["Labels"], filters)]
        if path == "/volumes":
            return 200, {"Volumes": [v for v in VOLUMES if matches(v["Labels"], filters)]}
        if path == "/system/df":
            images = [{**i, "Labels": i["Config"]["Labels"], "Size": 400_000_000} for i in IMAGES]
            volumes = [{**v, "UsageData": {"Size": 100_000_000}} for v in VOLUMES]
            return 200, {"Images": images, "Volumes": volumes, "BuildCache": [{"Size": 50_000_000}]}
        if path == "/networks":
            return 200, [n for n in NETWORKS if matches(n["Labels"], filters)]
        return self.one(path)

    def one(self, path: str) -> tuple[int, object]:
        segments = path.strip("/").split("/")
        kind = segments[0]
        if kind == "containers" and segments[-1] == "json":
            found = by_ref(self.containers, segments[1], lambda c: [c["Name"].lstrip("/")])
        elif kind == "images" and segments[-1] == "json":
            found = image_ref("/".join(segments[1:-1]))
        elif kind == "volumes":
            found = next((v for v in [*VOLUMES, *self.made] if v["Name"] == segments[1]), None)
        elif kind == "networks":
            found = by_ref(NETWORKS, segments[1], lambda n: [n["Name"]])
        else:
            return 404, {"message": "page not found"}
        if found is None:
            return 404, {"message": f"No such object: {segments[1]}"}
        return 200, json.loads(json.dumps(found))

    def remove_container(self, ident: str) -> tuple[int, object]:
        """DELETE /containers/{id}?force=1&v=1: recorded, the container gone."""
        self.asked.append(f"remove container {ident}")
        self.containers[:] = [c for c in self.containers if c["Id"] != ident]
        return 204, None

    def create_volume(self, name: str, labels: dict[str, str]) -> tuple[int, object]:
        """POST /volumes/create as the engine answers it: the volume as it is now (an existing
        one unchanged, whatever labels were asked for)."""
        self.asked.append(f"create volume {name}")
        found = next((v for v in [*VOLUMES, *self.made] if v["Name"] == name), None)
        if found is None:
            found = {"Name": name, "Driver": "local", "Options": None, "Labels": dict(labels)}
            self.made.append(found)
        return 201, json.loads(json.dumps(found))

    def inert_mount(self, path: str) -> bool:
        """The agent's area is mounted nosuid,nodev here unless a test says otherwise."""
        return not below_any(path, self.suid_mounts)

    def addresses(self, name: str) -> list[str]:
        from tests.fakes import HOSTS

        return HOSTS.get(name, [])

    def realpath(self, path: str) -> str:
        path = posixpath.normpath(path)
        if path.startswith("/dev/"):
            raise Denied(f"host path {path!r} is a device", rule="host-path-special")
        for link, target in LINKS.items():
            if path == link or path.startswith(link + "/"):
                return self.realpath(target + path[len(link):])
        return path


def summary(c: dict) -> dict:
    return {"Id": c["Id"], "Names": [c["Name"]], "Labels": c["Config"]["Labels"], "Mounts": c["Mounts"]}


def matches(labels: dict[str, str], filters: dict) -> bool:
    wanted = filters.get("label", {})
    for item in wanted if isinstance(wanted, (list, dict)) else []:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def by_ref(items: list[dict], ref: str, names) -> dict | None:  # type: ignore[no-untyped-def]
    for item in items:
        if item["Id"] == ref or ref in names(item):
            return item
    prefixed = [item for item in items if item["Id"].startswith(ref)]
    return prefixed[0] if len(prefixed) == 1 else None


def image_ref(ref: str) -> dict | None:
    bare = ref.removeprefix("docker.io/").removeprefix("library/")
    if ":" not in bare.rpartition("/")[2] and not bare.startswith("sha256:"):
        bare += ":latest"
    for item in IMAGES:
        if bare in item["RepoTags"] or ref in item.get("RepoDigests", []) \
                or item["Id"] == ref or item["Id"].startswith("sha256:" + ref) \
                or (ref.startswith("sha256:") and item["Id"].startswith(ref)):
            return item
    return None
