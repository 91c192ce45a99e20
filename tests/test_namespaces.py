# One case per line keeps each command beside its expected rule; such lines run long.
# ruff: noqa: E501

"""Docker's shared namespaces, decided against a fake engine (gatekeeper.vetting.namespaces).

The agent shares one engine with the operator. What it joins, links, tags and
labels must be its own, or named by [shared]; each table lists every spelling
docker reads the name from ("trying to cheat") beside the legit uses.

Engine contents (owner label gatekeeper.owner):
    appnet      network    default   the agent's network
    opnet       network    -         the operator's network (ID n2...)
    sharednet   network    -         the operator's, [shared] networks "shared*"
    web         container  default   the agent's container (its create set gatekeeper.created)
    heir        container  default   the operator's container of app:1 (owner label inherited)
    db          container  -         the operator's database (its env holds secrets)
    cache       container  -         the operator's, [shared] containers "cache"
    app:1       image      default   built by the agent
    postgres:15 image      -         the operator's
    pulled:1    image      -         pulled by the agent (a gatekeeper pull record)
    multi:1     image      -         pulled by the agent, but the operator tagged it op:1 too
    repulled:1  image      -         the operator's pull of the ID and tag of the agent's removed pull:
                                     the agent's stale record pins another LastTagTime
    unpinned:1  image      -         pulled by the agent before records pinned a LastTagTime
    untimed:1   image      -         pulled by the agent, on an engine that gives no LastTagTime
    gold:1      image      default   the agent's, [protect] images "gold:*"
    traefiked:1 image      -         pulled, carries LABEL traefik.enable
    poser:1     image      -         carries LABEL com.docker.compose.project=prod (and com.docker.compose.network)
    built:1     image      default   built by compose: its service's compose labels
    stale:1     image      default   the agent's, but labelled traefik.enable (by the operator)
    stalebuilt-app image   default   the same, under compose's name for service app of project stalebuilt
    opbuilt-app image      -         the operator's, under compose's name for service app of project opbuilt
    base:2      image      -         the operator's, [shared] images "base:*"
    img         image      default   an image the agent built, which the commands run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.grammar.spec import Flag
from gatekeeper.policy import REFUSED_LABELS, load_policy
from gatekeeper.vetting.namespaces import familiar
from tests.fakes import StaticWorld
from tests.owner_label import build_records_answer

OWNER = "gatekeeper.owner"
MINE = {OWNER: "default"}
CREATED = {**MINE, "gatekeeper.created": "default"}  # a container the agent's run/create made


APP = "sha256:a1" + "0" * 62


TAGGED = "2026-11-30T10:00:00.123456789Z"  # an image's LastTagTime (a pull record's pin)


def obj(kind: str, ident: str, names: list[str], labels: dict[str, str], image: str = APP,
        digests: list[str] | None = None, tagged: str = TAGGED) -> dict:
    return {"kind": kind, "id": ident, "names": names, "labels": labels, "image": image, "digests": digests,
            "tagged": tagged}


def pulled_from_a_registry(tag: str) -> list[str]:
    """An image's RepoDigests: it came from a registry ([images] allowed admits any here)."""
    return [tag.partition(":")[0] + "@sha256:" + "6" * 64]


ENGINE = [
    obj("network", "n1" + "0" * 62, ["appnet"], MINE),
    obj("network", "n2" + "0" * 62, ["opnet"], {}),
    obj("network", "n3" + "0" * 62, ["sharednet"], {}),
    obj("container", "c1" + "0" * 62, ["web"], CREATED),
    obj("container", "c4" + "0" * 62, ["heir"], MINE),
    obj("container", "c2" + "0" * 62, ["db"], {"com.docker.compose.project": "prod"}),
    obj("container", "c3" + "0" * 62, ["cache"], {}),
    obj("image", APP, ["app:1"], MINE),
    obj("image", "sha256:a2" + "0" * 62, ["postgres:15"], {}),
    obj("image", "sha256:a3" + "0" * 62, ["pulled:1"], {}),
    obj("image", "sha256:a4" + "0" * 62, ["multi:1", "op:1"], {}),
    obj("image", "sha256:a5" + "0" * 62, ["gold:1"], MINE),
    obj("image", "sha256:a6" + "0" * 62, ["base:2"], {}),
    obj("image", "sha256:a7" + "0" * 62, ["img:latest"], MINE),
    obj("image", "sha256:a8" + "0" * 62, ["traefiked:1"], {"traefik.enable": "true"},
        digests=pulled_from_a_registry("traefiked")),
    obj("image", "sha256:a9" + "0" * 62, ["poser:1"], {"com.docker.compose.project": "prod", "team": "x",
        "com.docker.compose.network": "prod_default"}, digests=pulled_from_a_registry("poser")),
    obj("image", "sha256:aa" + "0" * 62, ["stale:1"], {**MINE, "traefik.enable": "true"}),
    obj("image", "sha256:ab" + "0" * 62, ["built:1"], {**MINE, "com.docker.compose.project": "proj",
        "com.docker.compose.service": "app", "com.docker.compose.version": "2.40.3", "app": "x",
        "com.docker.compose.image.builder": "classic"}),
    obj("image", "sha256:ac" + "0" * 62, ["builder:1"], {**MINE, "com.docker.compose.image.builder": "buildkit-x"}),
    obj("image", "sha256:ad" + "0" * 62, ["fetched:1"], {}, digests=pulled_from_a_registry("fetched")),
    obj("image", "sha256:ae" + "0" * 62, ["stalebuilt-app:latest"], {**MINE, "traefik.enable": "true"}),
    obj("image", "sha256:af" + "0" * 62, ["opbuilt-app:latest"], {}),
    obj("image", "sha256:b1" + "0" * 62, ["repulled:1"], {}, tagged="2026-11-30T11:00:00.5Z"),
    obj("image", "sha256:b2" + "0" * 62, ["unpinned:1"], {}),
    obj("image", "sha256:b3" + "0" * 62, ["untimed:1"], {}, tagged="0001-01-01T00:00:00Z"),
]
# (profile, image ID, tag, pin) as gatekeeper.steps records pulls.
PULLS = [("default", "sha256:a3" + "0" * 62, "pulled:1", TAGGED), ("default", "sha256:a4" + "0" * 62, "multi:1", TAGGED),
         ("bot", "sha256:a2" + "0" * 62, "postgres:15", TAGGED),
         ("default", "sha256:b1" + "0" * 62, "repulled:1", TAGGED),  # stale: the image came back since
         ("default", "sha256:b2" + "0" * 62, "unpinned:1", ""),  # made before the pin
         ("default", "sha256:b3" + "0" * 62, "untimed:1", "0001-01-01T00:00:00Z")]
# The agent's build records (gatekeeper.build_records): every image labelled as its, built by it.
BUILT = {o["id"] for o in ENGINE if o["kind"] == "image" and o["labels"].get(OWNER) == "default"}


class Engine(StaticWorld):
    """Answers gatekeeper's queries the way dockerd would, from ENGINE and PULLS."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        super().__init__(files=files)
        self.calls: list[list[str]] = []

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        self.calls.append(args)
        if args[0] == "volume" and args[1] == "inspect":
            return 1, b"\n", b"Error: No such volume"
        if args[1] == "inspect":
            assert args[2] == "--format" and args[4] == "--", args
            return self.inspect(args[0], args[5:])
        built = build_records_answer(args, BUILT)
        if built is not None:
            return built
        if args[:2] == ["volume", "ls"]:
            filters = dict(a.removeprefix("label=").split("=", 1) for a in args if a.startswith("label="))
            tags = [t for p, i, t, pin in PULLS if filters == {"gatekeeper.pulled-by": p, "gatekeeper.pulled-image": i,
                                                                "gatekeeper.pulled-tag-time": pin}]
            return 0, "".join(t + "|\n" for t in tags).encode(), b""
        if args[1] == "ls":
            return 0, b"", b""
        return 1, b"", b"unexpected query"

    def find(self, kind: str, word: str) -> dict | None:
        mine = [o for o in ENGINE if o["kind"] == kind]
        bare = word.lstrip("/") if kind == "container" else word
        for o in mine:
            names = o["names"] if kind != "image" else o["names"] + [n.removesuffix(":latest") for n in o["names"]]
            if word in (o["id"], o["id"].removeprefix("sha256:")) or bare in names:
                return o
        hits = [o for o in mine if o["id"].removeprefix("sha256:").startswith(word)]
        return hits[0] if len(hits) == 1 else None

    def inspect(self, kind: str, words: list[str]) -> tuple[int, bytes, bytes]:
        out, err = [], []
        for word in words:
            o = self.find(kind, word)
            if o is None:
                err.append(f"Error response from daemon: No such {kind}: {word}")
                continue
            names = {"container": "/" + o["names"][0], "image": o["names"]}.get(kind, o["names"][0])
            image = f"\t{o['image']}" if kind == "container" else \
                f"\t{json.dumps(o['digests'])}\t{json.dumps(o['tagged'] or None)}" if kind == "image" else ""
            out.append(f"{o['id']}\t{json.dumps(names)}\t{json.dumps(o['labels'] or None)}{image}\n")
        return (1 if err else 0), "".join(out).encode(), "\n".join(err).encode()


POLICY = """
[commands]
allowed = ["run", "create", "build", "pull", "rmi", "top"]
[shared]
networks = ["shared*"]
containers = ["cache"]
images = ["base:*"]
[protect]
images = ["gold:*"]
"""


@pytest.fixture
def policy(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return load_policy(str(path))


FILES = {
    "/home/ai-worker/labels-compose": b"team=x\ncom.docker.compose.project=prod\n",
    "/home/ai-worker/labels-bom": b"\xef\xbb\xbfgatekeeper.owner=bot\n",
    "/home/ai-worker/labels-bom-later": b"team=x\n\xef\xbb\xbfgatekeeper.owner=bot\n",
    "/home/ai-worker/labels-nul": b"team=x\x00\n",
    "/home/ai-worker/labels-latin1": b"team=\xe9\n",
    "/home/ai-worker/labels-ok": b"# a comment\n  team=x\n\nowner=me\n",
}

ALLOWED = {
    # networks
    "own network": "docker run --network appnet img",
    "own network, long syntax": "docker run --network name=appnet img",
    "alias on own network": "docker run --network appnet --network-alias db img",
    "alias in the long syntax on own network": "docker run --network name=appnet,alias=db img",
    "docker's bridge": "docker run --network bridge img",
    "none": "docker create --net=none img",
    "default": "docker run --network default img",
    "shared network": "docker run --network sharednet img",
    # links
    "link to own container": "docker run --link web:w img",
    "link to a shared container": "docker run --link cache img",
    # tags
    "build a new tag": "docker build -t fresh:1 -",
    "re-build own tag": "docker build --tag=app:1 -",
    "build a shared tag": "docker build -t base:2 -",
    "pull a new tag": "docker pull fresh:1",
    "run an image it pulled": "docker run --pull missing pulled:1",
    "run a registry's image by ID": "docker run sha256:ad" + "0" * 62,
    "pull over own tag": "docker pull app:1",
    "pull over a pulled tag": "docker pull pulled:1",
    "pull by digest": "docker pull fresh@sha256:" + "f" * 64,
    "rmi a pulled image": "docker rmi pulled:1",
    "rmi own image": "docker rmi app:1",
    # top
    "top without ps options": "docker top web",
    "top aux": "docker top web aux",
    "top -ef": "docker top web -ef",
    # labels
    "a plain label": "docker run --label team=x img",
    "a dotted label": "docker run -l com.example.team=x img",
    "a label file of plain lines": "docker run --label-file /home/ai-worker/labels-ok img",
    "build label": "docker build --label org.opencontainers.image.source=x -",
    "volume label": "docker run --mount type=volume,src=v1,dst=/d,volume-label=team=x img",
}


@pytest.mark.parametrize("command", ALLOWED.values(), ids=ALLOWED.keys())
def test_allowed(command: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, Engine(FILES))
    assert decision.allowed, decision.reason


TRYING_TO_CHEAT = {
    # networks: the operator's, in every spelling
    "operator's network": ("docker run --network opnet img", "foreign-network", "'opnet'"),
    "--net=": ("docker run --net=opnet img", "foreign-network", "'opnet'"),
    "long syntax": ("docker create --network name=opnet img", "foreign-network", "'opnet'"),
    "by ID prefix": ("docker run --network n2 img", "foreign-network", "'opnet'"),
    "second network": ("docker run --network appnet --network opnet img", "foreign-network", "'opnet'"),
    "alias on a shared network": ("docker run --network sharednet --network-alias db img", "foreign-network", "alias"),
    "alias (hidden spelling)": ("docker run --network sharednet --net-alias=db img", "foreign-network", "alias"),
    "alias in the long syntax": ("docker run --network name=sharednet,alias=db img", "foreign-network", "alias"),
    "alias on the operator's": ("docker run --network opnet --network-alias db img", "foreign-network", "'opnet'"),
    "unknown network": ("docker run --network ghost img", "scope-unresolved", "ghost"),
    # links: the target's environment is copied into ours
    "link the operator's db": ("docker run --link db img env", "foreign-link", "'db'"),
    "link with an alias": ("docker run --link db:database img env", "foreign-link", "'db'"),
    "link with =": ("docker create --link=db:x img", "foreign-link", "'db'"),
    "link with a slash": ("docker run --link /db img", "foreign-link", "'db'"),
    "link by ID prefix": ("docker run --link c2 img", "foreign-link", "'db'"),
    "link among own": ("docker run --link web --link db img", "foreign-link", "'db'"),
    "link the operator's container of its image": ("docker run --link heir img env", "foreign-link", "'heir'"),
    # tags: never re-point the operator's
    "build -t the operator's tag": ("docker build -t postgres:15 -", "foreign-tag", "'postgres:15'"),
    "--tag=": ("docker build --tag=postgres:15 -", "foreign-tag", "'postgres:15'"),
    "fully qualified": ("docker build -t docker.io/library/postgres:15 -", "foreign-tag", "'postgres:15'"),
    "second tag": ("docker build -t mine:1 -t postgres:15 -", "foreign-tag", "'postgres:15'"),
    "buildx image output": ("docker build -o type=image,name=postgres:15 -", "foreign-tag", "'postgres:15'"),
    "protected own tag": ("docker build -t gold:1 -", "protected", "gold:*"),
    "protected new tag": ("docker build -t gold:2 -", "protected", "gold:*"),
    "pull the operator's tag": ("docker pull postgres:15", "foreign-tag", "'postgres:15'"),
    "pull it fully qualified": ("docker image pull docker.io/library/postgres:15", "foreign-tag", "'postgres:15'"),
    "pull a protected tag": ("docker pull gold:3", "protected", "gold:*"),
    "run --pull always": ("docker run --pull always postgres:15", "foreign-tag", "'postgres:15'"),
    "create --pull=always": ("docker create --pull=always postgres:15", "foreign-tag", "'postgres:15'"),
    # the pull's image would bring labels nobody checked (gatekeeper.vetting.ownership.check_inherited_labels)
    # the operator's local image (gatekeeper.image_scope): another profile's pull is not this one's
    "run the operator's image": ("docker run --pull missing postgres:15", "image-not-shared", "'postgres:15'"),
    "create it by short ID": ("docker create a20000000000", "image-not-shared", "'a20000000000' (postgres:15)"),
    "run --pull always over its own": ("docker run --pull always app:1", "image-labels-unchecked", "docker pull app:1"),
    "pull every tag": ("docker pull -a postgres", "foreign-tag", "--all-tags"),
    "another profile's pull": ("docker rmi postgres:15", "scope-owned", "'postgres:15'"),
    "rmi an image the operator also tagged": ("docker rmi multi:1", "scope-owned", "'multi:1'"),
    "rmi the operator's tag of a pulled image": ("docker rmi op:1", "scope-owned", "'op:1'"),
    # a record outlives its image: the operator's pull of the same ID and tag is not the agent's
    "rmi the operator's image under a stale record": ("docker rmi repulled:1", "scope-owned", "'repulled:1'"),
    "... by ID": ("docker rmi -f sha256:b1" + "0" * 62, "scope-owned", "repulled:1"),
    "pull over it": ("docker pull repulled:1", "foreign-tag", "'repulled:1'"),
    "build -t over it": ("docker build -t repulled:1 -", "foreign-tag", "'repulled:1'"),
    "run it": ("docker run --pull missing repulled:1", "image-not-shared", "'repulled:1'"),
    "rmi under a record made before the pin": ("docker rmi unpinned:1", "scope-owned", "'unpinned:1'"),
    "rmi on an engine without LastTagTime": ("docker rmi untimed:1", "scope-owned", "'untimed:1'"),
    # top: the agent's words reach the host's ps
    "ps format": ("docker top web -o pid,args", "top-arguments", "-o pid,args"),
    "two ps words": ("docker top web aux e", "top-arguments", "aux e"),
    "ps sort": ("docker top web --sort=pid", "top-arguments", "--sort=pid"),
    # labels
    "pose as a compose service": ("docker run --label com.docker.compose.project=prod img", "refused-label", "com.docker.compose.project"),
    "compose label, short flag": ("docker create -l com.docker.compose.service=db img", "refused-label", "com.docker.compose.service"),
    "traefik routing": ("docker run -l 'traefik.http.routers.x.rule=Host(`shop.example`)' img", "refused-label", "traefik.*"),
    "traefik in capitals": ("docker run --label=Traefik.enable=true img", "refused-label", "traefik.*"),
    "watchtower": ("docker run --label com.centurylinklabs.watchtower.enable=true img", "refused-label", "watchtower"),
    "caddy": ("docker run --label caddy=shop.example img", "refused-label", "caddy"),
    "label file with a compose label": ("docker run --label-file /home/ai-worker/labels-compose img", "refused-label", "com.docker.compose.project"),
    "label file starting with a BOM": ("docker run --label-file /home/ai-worker/labels-bom img", "reserved-label", "byte-order mark"),
    "BOM on a later line": ("docker run --label-file /home/ai-worker/labels-bom-later img", "reserved-label", "byte-order mark"),
    "NUL in a label file": ("docker run --label-file /home/ai-worker/labels-nul img", "reserved-label", "control character"),
    "not UTF-8": ("docker run --label-file /home/ai-worker/labels-latin1 img", "reserved-label", "UTF-8"),
    "look-alike key": ("docker run --label 'gatekeeper\u2024owner=x' img", "refused-label", "printable ASCII"),
    "volume label": ("docker run --mount type=volume,src=v1,dst=/d,volume-label=com.docker.compose.project=x img", "refused-label", "volume-label"),
    "build label": ("docker build --label com.docker.compose.project=prod -", "refused-label", "com.docker.compose"),
}


@pytest.mark.parametrize(("command", "rule", "named"), TRYING_TO_CHEAT.values(), ids=TRYING_TO_CHEAT.keys())
def test_trying_to_cheat(command: str, rule: str, named: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, Engine(FILES))
    assert not decision.allowed
    assert decision.rule == rule, decision.reason
    assert named in decision.reason


def test_without_shared_entries_the_operators_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[commands]\nallowed = ["run", "build"]\n')
    policy = load_policy(str(path))
    assert decide("docker run --network sharednet img", policy, Engine()).rule == "foreign-network"
    assert decide("docker run --link cache img", policy, Engine()).rule == "foreign-link"
    assert decide("docker build -t base:2 -", policy, Engine()).rule == "foreign-tag"


def test_a_new_pull_is_recorded_afterwards(policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker pull fresh", policy, Engine())
    assert decision.afterwards == [("pull-record", "fresh:latest", "new")]
    assert decide("docker pull app:1", policy, Engine()).afterwards == [("pull-record", "app:1", "owned")]
    assert decide("docker pull base:2", policy, Engine()).afterwards == []  # shared: never becomes the agent's


def test_compose_pull_is_recorded_per_service(policy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`compose pull` pulls each service's image: recorded as `docker pull` is (not behind the
    proxy, which records the pulls it forwards itself)."""
    from types import SimpleNamespace

    from gatekeeper.vetting.namespaces import vet_compose_tags

    services = {"a": {"image": "fresh"}, "b": {"image": "app:1"}, "c": {"image": "base:2"}, "d": {"build": {}}}

    def steps(policy, positionals: list[str] | None = None) -> list:  # type: ignore[no-untyped-def]
        ctx = SimpleNamespace(policy=policy, world=Engine(), vetted=SimpleNamespace(afterwards=[]),
                              parsed=SimpleNamespace(uses=[], positionals=positionals or []))
        vet_compose_tags(ctx, services, "compose pull", "proj")  # type: ignore[arg-type]
        return ctx.vetted.afterwards

    assert steps(policy) == [("pull-record", "fresh:latest", "new"), ("pull-record", "app:1", "owned")]
    assert steps(policy, ["b"]) == [("pull-record", "app:1", "owned")]
    path = tmp_path / "proxied.toml"
    path.write_text(POLICY + '[docker]\nhost = "unix:///run/gk/d.sock"\n[proxy]\nlisten = "/run/gk/d.sock"\n')
    assert steps(load_policy(str(path))) == []


def test_rmi_of_a_pulled_image_forgets_the_record(policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker rmi pulled:1", policy, Engine())
    assert decision.afterwards == [("pull-forget", "sha256:a3" + "0" * 62)]


def test_behind_the_proxy_the_proxy_records_pulls(tmp_path: Path) -> None:
    """[docker] host is the proxy's socket: the proxy records and forgets pulls
    (gatekeeper.proxy.pulls), the CLI layer adds no steps (the proxy would refuse them);
    the rmi itself is decided the same (the proxy's records are the same volumes)."""
    path = tmp_path / "policy.toml"
    proxied = '[docker]\nhost = "unix:///run/gk/docker.sock"\n[proxy]\nlisten = "/run/gk/docker.sock"\n'
    path.write_text(POLICY + proxied)
    policy = load_policy(str(path))
    assert policy.through_proxy()
    pulled = decide("docker pull fresh", policy, Engine())
    assert pulled.allowed and pulled.afterwards == []
    removed = decide("docker rmi pulled:1", policy, Engine())
    assert removed.allowed and removed.afterwards == []
    path.write_text(POLICY + proxied.replace("/run/gk/docker.sock\"\n[", "/run/other.sock\"\n["))
    assert not load_policy(str(path)).through_proxy()  # control: another socket, the CLI layer records


def test_refused_labels_are_a_policy_key(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[labels]\nrefused = ["acme.*"]\n')
    policy = load_policy(str(path))
    assert decide("docker run -l traefik.enable=true img", policy, Engine()).allowed
    assert decide("docker run -l acme.x=1 img", policy, Engine()).rule == "refused-label"
    assert decide("docker run -l gatekeeper.owner=x img", policy, Engine()).rule == "reserved-label"
    assert "com.docker.compose.*" in REFUSED_LABELS


@pytest.mark.parametrize(("ref", "shown"), [
    ("alpine", "alpine:latest"), ("docker.io/library/alpine:3", "alpine:3"), ("library/alpine", "alpine:latest"),
    ("docker.io/acme/app", "acme/app:latest"), ("ghcr.io/acme/app:1", "ghcr.io/acme/app:1"),
    ("localhost:5000/app", "localhost:5000/app:latest"), ("a@sha256:00", "a@sha256:00"),
])
def test_familiar_reference(ref: str, shown: str) -> None:
    assert familiar(ref) == shown


@pytest.mark.parametrize("value", ['volumes = "x"', 'networks = ["a b"]', 'unknown = []'])
def test_shared_keys_are_validated(value: str, tmp_path: Path) -> None:
    from gatekeeper.errors import PolicyError

    path = tmp_path / "bad.toml"
    path.write_text(f"[shared]\n{value}\n")
    with pytest.raises(PolicyError):
        load_policy(str(path))


# ---------------------------------------------------------------- compose


def compose_decided(canonical: str, model: dict, policy, uses: list | None = None) -> str:  # type: ignore[no-untyped-def]
    """The rule vet_compose_ownership denies with ("" if allowed), on the rendered model."""
    from types import SimpleNamespace

    from gatekeeper.errors import Denied
    from gatekeeper.vetting.compose_ownership import vet_compose_ownership

    ctx = SimpleNamespace(
        located=SimpleNamespace(canonical=canonical, spelled=canonical),
        vetted=SimpleNamespace(compose_model=json.loads(json.dumps(model)), afterwards=[], copies={}),
        parsed=SimpleNamespace(uses=uses or [], positionals=[]), policy=policy, argv=[],
        world=Engine(files={"/home/ai-worker/based/Dockerfile": b"FROM traefiked:1\nRUN true\n"}),
        host_path=lambda path, what: path,
    )
    try:
        vet_compose_ownership(ctx)  # type: ignore[arg-type]
    except Denied as denied:
        return denied.rule
    return ""


def model(service: dict | None = None, networks: dict | None = None, volumes: dict | None = None) -> dict:
    return {
        "name": "proj",
        "services": {"app": {"image": "img", **(service or {})}},
        "networks": networks if networks is not None else {"default": {"name": "proj_default"}},
        "volumes": volumes or {},
    }


COMPOSE_CASES = {
    "own new project network": ("compose up", model(), ""),
    "own existing network": ("compose up", model(networks={"default": {"name": "appnet"}}), ""),
    "external own network with aliases": ("compose up", model({"networks": {"x": {"aliases": ["db"]}}}, {"x": {"name": "appnet", "external": True}}), ""),
    "external shared network": ("compose up", model(networks={"x": {"name": "sharednet", "external": True}}), ""),
    "docker's bridge": ("compose up", model(networks={"x": {"name": "bridge", "external": True}}), ""),
    "external operator network": ("compose up", model(networks={"x": {"name": "opnet", "external": True}}), "foreign-network"),
    "operator network by ID prefix": ("compose up", model(networks={"x": {"name": "n2", "external": True}}), "foreign-network"),
    "non-external, named like the operator's": ("compose create", model(networks={"default": {"name": "opnet"}}), "foreign-network"),
    "alias on a shared network": ("compose up", model({"networks": {"x": {"aliases": ["db"]}}}, {"x": {"name": "sharednet", "external": True}}), "foreign-network"),
    # compose names every service on each network it joins by its service name: an alias
    "service on a shared network": ("compose up", model({"networks": ["x"]}, {"x": {"name": "sharednet", "external": True}}), "foreign-network"),
    "service on a shared network, mapping form": ("compose up", model({"networks": {"x": {}}}, {"x": {"name": "sharednet", "external": True}}), "foreign-network"),
    "service on a shared network as its default": ("compose up", model(networks={"default": {"name": "sharednet", "external": True}}), "foreign-network"),
    "service on its own external network": ("compose up", model({"networks": ["x"]}, {"x": {"name": "appnet", "external": True}}), ""),
    "network_mode bridge beside a shared network": ("compose up", model({"network_mode": "bridge"}, {"default": {"name": "sharednet", "external": True}}), ""),
    "network_mode by name": ("compose run", model({"network_mode": "opnet"}), "foreign-network"),
    "external_links": ("compose up", model({"external_links": ["db:database"]}), "foreign-link"),
    "external_links to own": ("compose up", model({"external_links": ["web"]}), ""),
    "links to own services": ("compose up", model({"links": ["db"]}), ""),
    "use the operator's image": ("compose up", model({"image": "postgres:15"}), "image-not-shared"),
    "use its own image": ("compose up", model({"image": "app:1"}), ""),
    "use a registry's image": ("compose up", model({"image": "fetched:1"}), ""),
    "use an image it pulled": ("compose up", model({"image": "pulled:1"}), ""),
    "build into the operator's tag": ("compose up", model({"image": "postgres:15", "build": {"context": "/home/ai-worker/app"}}), "foreign-tag"),
    "compose build into it": ("compose build", model({"image": "docker.io/library/postgres:15", "build": {"context": "/home/ai-worker/app"}}), "foreign-tag"),
    "build.tags re-points the operator's": ("compose build", model({"image": "app:1", "build": {"context": "/home/ai-worker/app", "tags": ["mine:2", "postgres:15"]}}), "foreign-tag"),
    "build.tags of its own": ("compose up", model({"build": {"context": "/home/ai-worker/app", "tags": ["mine:2", "app:1"]}}), ""),
    "build into own tag": ("compose build", model({"image": "app:1", "build": {"context": "/home/ai-worker/app"}}), ""),
    "compose pull of the operator's tag": ("compose pull", model({"image": "postgres:15"}), "foreign-tag"),
    "pull_policy always": ("compose up", model({"image": "postgres:15", "pull_policy": "always"}), "foreign-tag"),
    "protected tag": ("compose build", model({"image": "gold:9", "build": {"context": "/home/ai-worker/app"}}), "protected"),
    "pose as the operator's compose service": ("compose up", model({"labels": {"com.docker.compose.project": "prod"}}), "refused-label"),
    "traefik on a service": ("compose up", model({"labels": ["traefik.enable=true"]}), "refused-label"),
    "refused label on a volume": ("compose up", model(volumes={"v": {"name": "proj_v", "labels": {"com.docker.compose.volume": "x"}}}), "refused-label"),
    # the labels a service's containers inherit from its image follow the rules of its own
    "image with a traefik label": ("compose up", model({"image": "traefiked:1"}), "refused-label"),
    "image posing as the operator's project": ("compose create", model({"image": "poser:1"}), "refused-label"),
    "compose run of it": ("compose run", model({"image": "poser:1"}), "refused-label"),
    "an image compose built (compose's own labels)": ("compose up", model({"image": "built:1"}), ""),
    "compose's builder mark, another value": ("compose up", model({"image": "builder:1"}), "refused-label"),
    "image compose would pull": ("compose up", model({"image": "nowhere:1"}), "image-labels-unchecked"),
    "pulled again before the create": ("compose up", model({"image": "img", "pull_policy": "always"}), "image-labels-unchecked"),
    "pulled daily": ("compose create", model({"image": "img", "pull_policy": "daily"}), "image-labels-unchecked"),
    "pull_policy missing of a present image": ("compose up", model({"image": "img", "pull_policy": "missing"}), ""),
    "built by compose (absent): its Dockerfile is checked": ("compose up", model({"image": "newbuild:1", "build": {"context": "/home/ai-worker/app"}}), ""),
    # a built image carries its base images' labels (docker copies them), and its containers inherit them
    "built FROM an image with a traefik label": ("compose up", model({"image": "newbuild:1", "build": {"context": "/home/ai-worker/based"}}), "refused-label"),
    "built inline FROM it": ("compose create", model({"image": "newbuild:2", "build": {"context": ".", "dockerfile_inline": "FROM traefiked:1"}}), "refused-label"),
    "built FROM it through a build argument": ("compose run", model({"image": "newbuild:2", "build": {"context": ".", "args": {"B": "traefiked:1"}, "dockerfile_inline": "ARG B=img\nFROM $B"}}), "refused-label"),
    "built FROM a plain image": ("compose up", model({"image": "newbuild:2", "build": {"context": ".", "dockerfile_inline": "FROM img\nLABEL a=b"}}), ""),
    "built FROM an image compose built": ("compose up", model({"image": "newbuild:2", "build": {"context": ".", "dockerfile_inline": "FROM built:1"}}), ""),
    "built FROM the traefik one, only as a build stage": ("compose up", model({"image": "newbuild:2", "build": {"context": ".", "dockerfile_inline": "FROM traefiked:1 AS b\nFROM img"}}), "refused-label"),
    "built without an image name": ("compose up", {"name": "proj", "services": {"app": {"build": {"context": "/home/ai-worker/based"}}}}, "refused-label"),
    "built without an image name, FROM a plain one": ("compose up", {"name": "proj", "services": {"app": {"build": {"context": ".", "dockerfile_inline": "FROM img"}}}}, ""),
    # compose's own name for what it builds, <project>-<service>, on the engine: run as it is
    "built without an image name, compose's name labelled traefik": ("compose up", {"name": "stalebuilt", "services": {"app": {"build": {"context": ".", "dockerfile_inline": "FROM img"}}}}, "refused-label"),
    "built without an image name, compose's name the operator's": ("compose up", {"name": "opbuilt", "services": {"app": {"build": {"context": ".", "dockerfile_inline": "FROM img"}}}}, "foreign-tag"),
    "compose build without an image name into the operator's": ("compose build", {"name": "opbuilt", "services": {"app": {"build": {"context": ".", "dockerfile_inline": "FROM img"}}}}, "foreign-tag"),
    "compose build without an image name, a new one": ("compose build", {"name": "fresh", "services": {"app": {"build": {"context": ".", "dockerfile_inline": "FROM img"}}}}, ""),
    "built without an image name, pull_policy build": ("compose up", {"name": "stalebuilt", "services": {"app": {"pull_policy": "build", "build": {"context": ".", "dockerfile_inline": "FROM img"}}}}, ""),
    "control: compose build creates no container": ("compose build", model({"image": "newbuild:2", "build": {"context": ".", "dockerfile_inline": "FROM traefiked:1"}}), ""),
    "control: stop creates nothing": ("compose stop", model({"image": "traefiked:1"}), ""),
}


@pytest.mark.parametrize(("canonical", "project", "rule"), COMPOSE_CASES.values(), ids=COMPOSE_CASES.keys())
def test_compose(canonical: str, project: dict, rule: str, policy) -> None:  # type: ignore[no-untyped-def]
    assert compose_decided(canonical, project, policy) == rule


def test_compose_up_pull_always_flag(policy) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    pull = [SimpleNamespace(flag=Flag("pull", "", True, "ok", ""), value="always", spelled="--pull")]
    assert compose_decided("compose up", model({"image": "postgres:15"}), policy, pull) == "foreign-tag"
    assert compose_decided("compose up", model({"image": "img"}), policy, pull) == "image-labels-unchecked"
    assert compose_decided("compose up", model({"image": "img"}), policy) == ""  # control


def test_compose_up_build_of_an_existing_image(policy) -> None:  # type: ignore[no-untyped-def]
    """A service with build: and its image present runs that image unless --build rebuilds it."""
    from types import SimpleNamespace

    build = [SimpleNamespace(flag=Flag("build", "", False, "ok", ""), value=None, spelled="--build")]
    service = {"image": "stale:1", "build": {"context": "/home/ai-worker/app"}}
    assert compose_decided("compose up", model(service), policy) == "refused-label"  # the image as it is
    assert compose_decided("compose up", model(service), policy, build) == ""  # rebuilt: its Dockerfile checked
    unnamed = {"name": "stalebuilt", "services": {"app": {"build": {"context": ".", "dockerfile_inline": "FROM img"}}}}
    assert compose_decided("compose up", unnamed, policy) == "refused-label"  # compose's name for it, as it is
    assert compose_decided("compose up", unnamed, policy, build) == ""  # rebuilt


@pytest.mark.parametrize(("logging", "allowed"), [
    ({"options": {"max-size": "10m"}}, True),
    ({"driver": "json-file", "options": {"max-file": "3"}}, True),
    ({"options": {"syslog-address": "unix:///run/systemd/journal/syslog"}}, False),
    ({"options": {"splunk-cacert": "/etc/shadow"}}, False),
    ({"driver": "local", "options": {"fluentd-address": "x"}}, False),
])
def test_compose_logging_options_without_a_driver(logging: dict, allowed: bool) -> None:
    from gatekeeper.errors import Denied
    from gatekeeper.vetting.compose_project import vet_project

    project = {"name": "p", "services": {"app": {"image": "img", "logging": logging}}}
    try:
        vet_project(project, lambda value, what: value)
    except Denied:
        assert not allowed
    else:
        assert allowed


def test_control_without_compose_s_own_aliases_a_shared_network_is_joined(policy, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gatekeeper.vetting import namespaces

    shared = model({"networks": ["x"]}, {"x": {"name": "sharednet", "external": True}})
    monkeypatch.setattr(namespaces, "joined_networks", lambda service: set())
    assert compose_decided("compose up", shared, policy) == ""


@pytest.mark.parametrize(("image_pin", "record_pin", "allowed"), [
    (TAGGED, TAGGED, True),  # control: the record pins the image as it is
    ("2026-11-30T11:00:00.5Z", TAGGED, False),  # the image came back (or was tagged) since
    (TAGGED, "", False),  # a record from before the pin
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", False),  # an engine that gives none
    ("", "", False),
])
def test_a_pull_record_counts_only_for_the_image_it_pinned(policy, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                           image_pin: str, record_pin: str, allowed: bool) -> None:
    """The same image ID and tag, the same record: only the LastTagTime decides (rmi, pull over it)."""
    ident = "sha256:b1" + "0" * 62
    engine = [o if o["id"] != ident else {**o, "tagged": image_pin} for o in ENGINE]
    pulls = [p if p[1] != ident else (*p[:3], record_pin) for p in PULLS]
    monkeypatch.setattr(sys.modules[__name__], "ENGINE", engine)
    monkeypatch.setattr(sys.modules[__name__], "PULLS", pulls)
    removed = decide("docker rmi repulled:1", policy, Engine())
    assert (removed.allowed, removed.rule) == (allowed, "allowed" if allowed else "scope-owned"), removed.reason
    pulled = decide("docker pull repulled:1", policy, Engine())
    assert pulled.allowed is allowed, pulled.reason
