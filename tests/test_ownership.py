"""Ownership rails, decided against a fake engine (gatekeeper.vetting.ownership).

The fake engine resolves names, '/names', full IDs and unique ID prefixes the
way dockerd does, and records every query, so each case also proves the
decision asked the engine once and never put a target into template text.

Engine contents (owner label gatekeeper.owner; a container is a profile's only when its
create also set gatekeeper.created and its image does not carry that: owner.proven_labels):
    web      default   the agent's container (of app:1)
    worker   default   the agent's container
    keep-db  default   the agent's, but protected by name ([protect] containers "keep-*")
    vital    default   the agent's, but protected by label vital=yes
    db       -         the operator's container (no owner label)
    other    bot       another profile's container
    heir     default   the operator's container of app:1: the owner label is inherited, no
                       gatekeeper.created
    baked    default   a container of forged:1, whose Dockerfile LABELs say gatekeeper.owner and
                       gatekeeper.created=default (the image carries them, so they prove nothing)
    app:1    default   an image the agent built
    base:1   -         the operator's image
    gold:1   default   the agent's, protected ([protect] images "gold:*")
    forged:1 default   an image with gatekeeper.created=default in its labels
    img      -         an image the commands run
    posing:1 -         LABEL com.docker.compose.project=ops (a pulled image, or built FROM one)
    stamped:1 -        LABEL gatekeeper.pulled-by=default
"""

# One case per line keeps each command beside its expected rule; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.grammar.spec import Flag
from gatekeeper.policy import load_policy
from gatekeeper.vetting import compose_ownership, ownership
from gatekeeper.vetting.compose_ownership import vet_compose_ownership
from tests.fakes import StaticWorld
from tests.owner_label import build_records_answer

OWNER, CREATED_BY = "gatekeeper.owner", "gatekeeper.created"
MINE = {OWNER: "default", CREATED_BY: "default"}  # what the agent's run/create labels a container
APP, BASE, FORGED = "sha256:d1" + "0" * 62, "sha256:e1" + "0" * 62, "sha256:f2" + "0" * 62


class Obj:
    def __init__(self, kind: str, ident: str, name: str, labels: dict[str, str], image: str = APP) -> None:
        self.kind, self.ident, self.name, self.labels, self.image = kind, ident, name, labels, image


ENGINE = [
    Obj("container", "a1" + "0" * 62, "web", MINE),
    Obj("container", "a2" + "0" * 62, "worker", MINE),
    Obj("container", "a3" + "0" * 62, "keep-db", MINE),
    Obj("container", "a4" + "0" * 62, "vital", {**MINE, "vital": "yes"}),
    Obj("container", "b1" + "0" * 62, "db", {}, BASE),
    Obj("container", "c1" + "0" * 62, "other", {OWNER: "bot", CREATED_BY: "bot"}),
    Obj("container", "c2" + "0" * 62, "heir", {OWNER: "default"}),
    Obj("container", "c3" + "0" * 62, "baked", MINE, FORGED),
    Obj("image", APP, "app:1", {OWNER: "default"}),
    Obj("image", BASE, "base:1", {}),
    Obj("image", "sha256:f1" + "0" * 62, "gold:1", {OWNER: "default"}),
    Obj("image", FORGED, "forged:1", MINE),
    Obj("image", "sha256:f3" + "0" * 62, "img:latest", {}),
    Obj("image", "sha256:f4" + "0" * 62, "posing:1", {"com.docker.compose.project": "ops", "team": "a"}),
    Obj("image", "sha256:f5" + "0" * 62, "stamped:1", {"gatekeeper.pulled-by": "default"}),
]


class FakeEngine(StaticWorld):
    """run_docker answers our queries from ENGINE the way dockerd would."""

    def __init__(self, objects: list[Obj], files: dict[str, bytes] | None = None) -> None:
        super().__init__(files=files)
        self.objects = objects
        self.calls: list[list[str]] = []

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        self.calls.append(args)
        # every image labelled as the agent's is its build here (gatekeeper.build_records)
        built = {o.ident for o in self.objects if o.kind == "image" and o.labels.get("gatekeeper.owner") == "default"}
        records = build_records_answer(args, built)
        if records is not None:
            return records
        if args[1] == "inspect":
            assert args[2] == "--format" and args[4] == "--", args  # targets only after --
            return self.inspect(args[0], args[5:])
        if args[1] == "ls":
            return self.listing(args)
        return 1, b"", b"unexpected query"

    def find(self, kind: str, word: str) -> Obj | str:
        mine = [o for o in self.objects if o.kind == kind]
        bare = word.lstrip("/") if kind == "container" else word
        tagged = bare if ":" in bare or kind != "image" else bare + ":latest"
        for o in mine:
            if word in (o.ident, o.ident.removeprefix("sha256:")) or o.name in (bare, tagged):
                return o
        hits = [o for o in mine if o.ident.removeprefix("sha256:").startswith(word) and word]
        if len(hits) == 1:
            return hits[0]
        return f"Error response from daemon: {'ambiguous' if hits else 'No such ' + kind}: {word}"

    def inspect(self, kind: str, words: list[str]) -> tuple[int, bytes, bytes]:
        out, err = [], []
        for word in words:
            found = self.find(kind, word)
            if isinstance(found, str):
                err.append(found)
                continue
            names = json.dumps("/" + found.name if kind == "container" else [found.name])
            # a container's image; an image's RepoDigests: these came from a registry (image_scope)
            image = f"\t{found.image}" if kind == "container" else \
                f"\t{json.dumps([found.name.partition(':')[0] + '@sha256:' + '6' * 64])}" if kind == "image" else ""
            out.append(f"{found.ident}\t{names}\t{json.dumps(found.labels or None)}{image}\n")
        return (1 if err else 0), "".join(out).encode(), "\n".join(err).encode()

    def listing(self, args: list[str]) -> tuple[int, bytes, bytes]:
        wanted = [a.removeprefix("label=").partition("=") for a in args if a.startswith("label=")]
        hits = [o for o in self.objects if o.kind == args[0]
                and all(o.labels.get(k) == v for k, _, v in wanted)]
        shown = [o.ident if "-q" in args else o.name for o in hits]
        return 0, "".join(name + "\n" for name in shown).encode(), b""


POLICY_TEXT = """
[paths]
allowed_roots = ["/home/ai-worker"]
[protect]
containers = ["keep-*"]
images = ["gold:*"]
labels = ["vital=yes"]
"""


@pytest.fixture
def policy(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TEXT)
    return load_policy(str(path))


def with_policy(tmp_path: Path, extra: str, profile: str | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "other.toml"
    path.write_text(POLICY_TEXT + extra)
    return load_policy(str(path), profile)


def decided(command: str, policy, engine: FakeEngine | None = None):  # type: ignore[no-untyped-def]
    return decide(command, policy, engine or FakeEngine(ENGINE))


WEB, WORKER = "a1" + "0" * 62, "a2" + "0" * 62
LABEL = ["--label", "gatekeeper.owner=default"]
# a build's cache sources: the images labelled with the agent's owner label (gatekeeper.build_cache),
# on test_allowed_and_pinned's engine (gold:1 left out there)
OWN_CACHE = [f"--cache-from={o.ident}" for o in ENGINE
             if o.kind == "image" and o.labels.get(OWNER) == "default" and o.name != "gold:1"]
CREATED = [*LABEL, "--label", "gatekeeper.created=default"]  # run/create: set by the create (owner.proven_labels)
OWNED = ["--filter", "label=gatekeeper.owner=default"]
# containers: and made by the agent's create (an inherited owner label is not enough)
OWNED_CONTAINERS = [*OWNED, "--filter", "label=gatekeeper.created=default"]

# image events: of the images the build records name (an image built FROM the agent's inherits its
# label), on test_allowed_and_pinned's engine (gold:1 left out there)
RECORDED_IMAGES = [word for o in sorted(ENGINE, key=lambda o: o.ident)
                   if o.kind == "image" and o.labels.get(OWNER) == "default" and o.name != "gold:1"
                   for word in ("--filter", f"image={o.ident}")]

# command -> argv docker runs (targets pinned to the IDs that were checked).
ALLOWED = {
    "stop own by name": ("docker stop web", ["docker", "stop", WEB]),
    "stop own by ID prefix": ("docker stop a1", ["docker", "stop", WEB]),
    "stop own with a leading slash": ("docker stop /web", ["docker", "stop", WEB]),
    "rm several own, flags between": ("docker rm -f web -v worker", ["docker", "rm", "-f", WEB, "-v", WORKER]),
    "rm after --": ("docker rm -- web", ["docker", "rm", "--", WEB]),
    "logs own": ("docker logs -f --tail 5 web", ["docker", "logs", "-f", "--tail", "5", WEB]),
    "top own with ps options": ("docker top web aux", ["docker", "top", WEB, "aux"]),
    "kill own": ("docker container kill -s HUP web", ["docker", "container", "kill", "-s", "HUP", WEB]),
    "rmi own image": ("docker rmi app:1", ["docker", "rmi", "app:1"]),
    "run gets the owner label": ("docker run -d --label team=x img", ["docker", "run", "--cap-drop=NET_RAW", *CREATED, "-d", "--label", "team=x", "img"]),
    "create gets the owner label": ("docker create img", ["docker", "create", "--cap-drop=NET_RAW", *CREATED, "img"]),
    "build gets the owner label": ("docker build -t t -", ["docker", "build", *OWN_CACHE, *LABEL, "-t", "t", "-"]),
    "container prune is scoped": ("docker container prune -f", ["docker", "container", "prune", *OWNED_CONTAINERS, "--filter", "label!=vital=yes", "-f"]),
    "image prune -a is scoped": ("docker image prune -a -f", ["docker", "image", "prune", *OWNED, "--filter", "label!=vital=yes", "-a", "-f"]),
    "volume prune is scoped": ("docker volume prune -f", ["docker", "volume", "prune", *OWNED, "--filter", "label!=vital=yes", "-f"]),
    "network prune is scoped": ("docker network prune -f", ["docker", "network", "prune", *OWNED, "--filter", "label!=vital=yes", "-f"]),
    "kill own by name": ("docker kill web", ["docker", "kill", WEB]),
    "a widening filter only narrows": ("docker container prune -f --filter 'label!=gatekeeper.owner=default'", ["docker", "container", "prune", *OWNED_CONTAINERS, "--filter", "label!=vital=yes", "-f", "--filter", "label!=gatekeeper.owner=default"]),
    "ps is all by default": ("docker ps -a", ["docker", "ps", "-a"]),
    # events that may be a container's need gatekeeper.created: the operator's container of an
    # image the agent built inherits only the owner label (its exec command lines stay out)
    "events are always the agent's": ("docker events --since 1h", ["docker", "events", *OWNED_CONTAINERS, "--since", "1h"]),
    "events: a filter of its own only narrows": ("docker system events --filter container=db", ["docker", "system", "events", *OWNED_CONTAINERS, "--filter", "container=db"]),
    "events of images alone: the owner label, the recorded images": ("docker events --filter type=image", ["docker", "events", *OWNED, *RECORDED_IMAGES, "--filter", "type=image"]),
    "events of other kinds alone, any spelling": ("docker events -f ' TYPE=network' --filter=type=volume", ["docker", "events", *OWNED, "-f", " TYPE=network", "--filter=type=volume"]),
    "events of images and containers": ("docker events --filter type=image --filter type=container", ["docker", "events", *OWNED_CONTAINERS, "--filter", "type=image", "--filter", "type=container"]),
    "events of an unknown type count as a container's": ("docker events --filter type=Container", ["docker", "events", *OWNED_CONTAINERS, "--filter", "type=Container"]),
    "inspect is all by default": ("docker inspect db", ["docker", "inspect", "db"]),
}


@pytest.mark.parametrize(("command", "argv"), ALLOWED.values(), ids=ALLOWED.keys())
def test_allowed_and_pinned(command: str, argv: list[str], policy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with_volume_prune = with_policy(tmp_path, '[commands]\nallowed = ["volume prune", "network prune", "stop", "rm", "logs", "top", "kill", "rmi", "run", "create", "build", "container prune", "image prune", "ps", "inspect", "system events"]\n')
    unprotected = [o for o in ENGINE if o.name not in ("keep-db", "gold:1")]  # else prune is refused
    decision = decided(command, with_volume_prune, FakeEngine(unprotected))
    assert decision.allowed, decision.reason
    assert decision.argv == argv


# command -> (rule, what the reason must name)
TRYING_TO_CHEAT = {
    "image events with an image filter of its own (ORed with ours)": ("docker events --filter type=image --filter image=base:1", "scope-owned", "alone"),
    "image events with other kinds (ANDed with our image filter)": ("docker events --filter type=image --filter type=volume", "scope-owned", "alone"),
    "stop the operator's container": ("docker stop db", "scope-owned", "'db'"),
    "kill the operator's container": ("docker kill db", "scope-owned", "'db'"),
    "kill another profile's container": ("docker container kill -s HUP other", "scope-owned", "owned by 'bot'"),
    "kill a protected container of its own": ("docker kill keep-db", "protected", "keep-*"),
    "another profile's container": ("docker rm other", "scope-owned", "owned by 'bot'"),
    "ID prefix of a foreign container": ("docker rm -f b1", "scope-owned", "'b1' (db)"),
    "foreign name with a leading slash": ("docker rm /db", "scope-owned", "'/db' (db)"),
    "several targets, one foreign": ("docker rm -f web worker db", "scope-owned", "'db'"),
    "foreign after --": ("docker logs -- db", "scope-owned", "'db'"),
    "foreign after a flag value": ("docker stop -t 1 db", "scope-owned", "'db'"),
    "logs of a foreign container": ("docker logs -f db", "scope-owned", "[scope] logs"),
    "ambiguous ID prefix": ("docker stop a", "scope-unresolved", "ambiguous"),
    "unknown name": ("docker rm ghost", "scope-unresolved", "No such container: ghost"),
    "template text as a name": ("docker stop '{{.Id}}'", "scope-unresolved", "{{.Id}}"),
    "rmi the operator's image": ("docker rmi base:1", "scope-owned", "'base:1'"),
    "rmi by image ID prefix": ("docker rmi e1", "scope-owned", "(base:1)"),
    "stats of every container": ("docker stats --no-stream", "scope-owned", "name your containers"),
    "forge the owner label": ("docker run --label gatekeeper.owner=other img", "reserved-label", "gatekeeper.owner"),
    "forge it in another case": ("docker run -l GATEKEEPER.owner=x img", "reserved-label", "GATEKEEPER.owner"),
    "forge it with =": ("docker create --label=gatekeeper.owner img", "reserved-label", "gatekeeper.owner"),
    "any gatekeeper.* label": ("docker run --label gatekeeper.protected=no img", "reserved-label", "gatekeeper.protected"),
    "owner label through a label file": ("docker run --label-file /home/ai-worker/labels img", "reserved-label", "gatekeeper.owner"),
    "owner label on a mounted volume": ("docker run --mount type=volume,src=data,dst=/d,volume-label=gatekeeper.owner=x img", "reserved-label", "volume-label"),
    "owner label on a build": ("docker build --label gatekeeper.owner=x -", "reserved-label", "gatekeeper.owner"),
    "stop a protected container of its own": ("docker stop keep-db", "protected", "keep-*"),
    "rm one with a protected label": ("docker rm -f web vital", "protected", "vital=yes"),
    "rmi a protected image": ("docker rmi gold:1", "protected", "gold:*"),
    "prune would hit a protected name": ("docker container prune -f", "protected", "keep-db"),
    "system prune": ("docker system prune -af --volumes", "prune-unscoped", "build cache"),
    "system prune with a label filter": ("docker system prune -f --filter label=gatekeeper.owner=default", "prune-unscoped", "build cache"),
    "builder prune": ("docker builder prune -af", "prune-unscoped", "build cache"),
    "command substitution": ("docker rm -f $(docker ps -aq)", "*", ""),
    "stop the operator's container of its image": ("docker stop heir", "scope-owned", "'heir'"),
    "logs of the operator's container of its image": ("docker logs heir", "scope-owned", "not created through gatekeeper"),
    "rm it among its own": ("docker rm -f web heir", "scope-owned", "'heir'"),
    "an image's LABEL gatekeeper.created": ("docker stop baked", "scope-owned", "'baked'"),
}


@pytest.mark.parametrize(("command", "rule", "named"), TRYING_TO_CHEAT.values(), ids=TRYING_TO_CHEAT.keys())
def test_trying_to_cheat(command: str, rule: str, named: str, policy) -> None:  # type: ignore[no-untyped-def]
    files = {"/home/ai-worker/labels": b"team=x\ngatekeeper.owner=default\n"}
    engine = FakeEngine(ENGINE, files)
    decision = decided(command, policy, engine)
    assert not decision.allowed
    assert rule in ("*", decision.rule), decision.reason
    assert named in decision.reason


def test_an_inherited_owner_label_is_not_ownership(policy, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The operator's `docker run app:1` inherits the image's gatekeeper.owner label: control
    first (without the gatekeeper.created rule the agent could stop it), then the rule."""
    import gatekeeper.owner

    with monkeypatch.context() as off:
        off.setattr(gatekeeper.owner, "proven_labels", lambda labels, image_labels: labels)
        assert decided("docker stop heir", policy).allowed
        assert decided("docker stop baked", policy).allowed
    assert decided("docker stop heir", policy).rule == "scope-owned"
    assert decided("docker stop baked", policy).rule == "scope-owned"
    assert decided("docker stop web", policy).allowed


def test_the_image_is_asked_only_when_it_decides(policy) -> None:  # type: ignore[no-untyped-def]
    """A container whose labels cannot prove ownership (an owner label without a matching
    gatekeeper.created) is not the agent's whatever its image says: no image query for it.
    Control: the agent's own container does need its image asked, and is allowed."""
    def image_queries(command: str) -> tuple[bool, int]:
        engine = FakeEngine(ENGINE)
        allowed = decided(command, policy, engine).allowed
        return allowed, len([call for call in engine.calls if call[:2] == ["image", "inspect"]])

    assert image_queries("docker stop heir") == (False, 0)
    assert image_queries("docker stop other") == (False, 1)  # a proof of another profile's: asked
    assert image_queries("docker stop web") == (True, 1)


def test_a_container_whose_image_is_gone_proves_nothing(policy) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine([Obj("container", "a1" + "0" * 62, "web", MINE, "sha256:" + "9" * 64)])
    assert decided("docker stop web", policy, engine).rule == "scope-owned"


def test_an_engine_that_cannot_say_the_image_is_a_denial(policy) -> None:  # type: ignore[no-untyped-def]
    class Broken(FakeEngine):
        def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
            if args[0] == "image":
                return 1, b"", b"permission denied"
            return super().run_docker(policy, args, stdin, timeout)

    assert decided("docker stop web", policy, Broken(ENGINE)).rule == "scope-unresolved"


# run/create: the container inherits its image's labels; they follow the rules of --label.
INHERITED = {
    "an image posing as the operator's compose service": ("docker run -d posing:1", "refused-label"),
    "the same through create": ("docker create posing:1", "refused-label"),
    "an image with a gatekeeper.* label": ("docker run stamped:1", "reserved-label"),
    "an image not on the engine: docker would pull it unchecked": ("docker run ghost:1", "image-labels-unchecked"),
    "a pull of a new image the create then uses": ("docker run --pull always app:1", "image-labels-unchecked"),
    "an image whose labels are plain": ("docker run img", ""),
    "its own owner label is overridden by the create": ("docker run app:1", ""),
    "a pull only when missing, of an image present": ("docker run --pull missing img", ""),
}


@pytest.mark.parametrize(("command", "rule"), INHERITED.values(), ids=INHERITED.keys())
def test_labels_a_container_inherits_from_its_image(command: str, rule: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decided(command, policy)
    assert decision.allowed is (rule == ""), decision.reason
    assert rule in ("", decision.rule), decision.reason


def test_control_without_the_inherited_check_the_image_labels_pass(policy, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ownership, "check_inherited_labels", lambda ctx, own: None)
    assert decided("docker run -d posing:1", policy).allowed
    assert decided("docker run stamped:1", policy).allowed


ONE_QUERY = {
    "docker rm -f web worker db": ["web", "worker", "db"],
    "docker stop a1 -t 3 /worker": ["a1", "/worker"],
    "docker rmi app:1 base:1": ["app:1", "base:1"],
}


@pytest.mark.parametrize(("command", "targets"), ONE_QUERY.items(), ids=ONE_QUERY.keys())
def test_all_targets_are_resolved_with_one_query(command: str, targets: list[str], policy) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine(ENGINE)
    decided(command, policy, engine)
    kind = "image" if command.startswith("docker rmi") else "container"
    resolving = [call for call in engine.calls if call[:2] == [kind, "inspect"]]  # (rmi also asks for pull records)
    assert len(resolving) == 1
    query = resolving[0]
    assert query[query.index("--") + 1 :] == targets


def test_no_query_when_scope_is_all_and_nothing_is_protected(tmp_path: Path) -> None:
    path = tmp_path / "all.toml"
    path.write_text('[scope]\nstop = "all"\nlogs = "all"\n')
    engine = FakeEngine(ENGINE)
    for command in ("docker stop db", "docker logs db"):
        decision = decide(command, load_policy(str(path)), engine)
        assert decision.allowed and decision.argv == command.split()
    assert engine.calls == []


def test_protect_holds_under_scope_all(tmp_path: Path) -> None:
    decision = decided("docker stop keep-db", with_policy(tmp_path, '[scope]\nstop = "all"\n'))
    assert decision.rule == "protected"


def test_profile_names_the_owner(tmp_path: Path) -> None:
    bot = with_policy(tmp_path, "", profile="bot")
    assert decided("docker stop other", bot).allowed
    assert decided("docker stop web", bot).rule == "scope-owned"
    run = decided("docker run img", bot)
    assert run.argv == ["docker", "run", "--cap-drop=NET_RAW", "--label", "gatekeeper.owner=bot", "--label", "gatekeeper.created=bot", "img"]


@pytest.mark.parametrize("profile", ["", "a b", "x\ny", "a=b", "{{.Id}}", "a'b"])
def test_bad_profile_names_are_a_policy_error(profile: str, tmp_path: Path) -> None:
    from gatekeeper.errors import PolicyError

    with pytest.raises(PolicyError):
        with_policy(tmp_path, "", profile=profile)


def test_listings_are_filtered_when_owned(tmp_path: Path) -> None:
    owned = with_policy(tmp_path, '[scope]\nps = "owned"\nimages = "owned"\n')
    assert decided("docker ps -a", owned).argv == ["docker", "ps", *OWNED_CONTAINERS, "-a"]
    assert decided("docker image ls", owned).argv == ["docker", "image", "ls", *OWNED]


def test_an_owned_image_list_comes_from_the_redacting_stand_in(tmp_path: Path) -> None:
    """The owner filter also selects the operator's image built FROM the agent's (the label is
    inherited): the stand-in keeps only the images a build record names."""
    owned = with_policy(tmp_path, '[scope]\nimages = "owned"\n')
    for command in ("docker images", "docker image ls -q", "docker images --format '{{.Repository}}'"):
        assert decided(command, owned).output_filter == "redact-at-source", command
    assert decided("docker images", with_policy(tmp_path, "")).output_filter is None  # control: "all"


def test_inspect_owned_needs_a_type(tmp_path: Path) -> None:
    owned = with_policy(tmp_path, '[scope]\ninspect = "owned"\n')
    assert decided("docker inspect web", owned).rule == "scope-owned"
    assert decided("docker inspect --type container db", owned).rule == "scope-owned"
    assert decided("docker inspect --type container web", owned).allowed
    assert decided("docker container inspect db", owned).rule == "scope-owned"


@pytest.mark.parametrize(("section", "value"), [
    ("scope", 'stop = "some"'), ("scope", 'unknown = "all"'), ("protect", 'containers = ["a b"]'),
    ("protect", 'labels = ["k=\\"v\\""]'), ("protect", 'images = "x"'),
])
def test_policy_keys_are_validated(section: str, value: str, tmp_path: Path) -> None:
    from gatekeeper.errors import PolicyError

    path = tmp_path / "bad.toml"
    path.write_text(f"[{section}]\n{value}\n")
    with pytest.raises(PolicyError):
        load_policy(str(path))


# ---------------------------------------------------------------- compose


def compose_ctx(canonical: str, model: dict, policy, engine: FakeEngine, uses: list | None = None) -> SimpleNamespace:  # type: ignore[no-untyped-def]
    return SimpleNamespace(
        located=SimpleNamespace(canonical=canonical, spelled=canonical),
        vetted=SimpleNamespace(compose_model=json.loads(json.dumps(model)), copies={}, afterwards=[]),
        parsed=SimpleNamespace(uses=uses or []),
        policy=policy, world=engine, argv=[],
        host_path=lambda path, what: path,  # a built service's Dockerfile is read (its FROM images' labels)
    )


def project(labels: object = None) -> dict:
    service: dict = {"image": "img", "build": {"context": "/home/ai-worker/app"}}
    if labels is not None:
        service["labels"] = labels
    return {
        "name": "app",
        "services": {"web": service},
        "volumes": {"data": {"name": "app_data"}, "ext": {"name": "shared", "external": True}},
        "networks": {"default": {"name": "app_default"}},
    }


def test_compose_model_gets_the_owner_label_everywhere(policy) -> None:  # type: ignore[no-untyped-def]
    ctx = compose_ctx("compose up", project({"team": "x"}), policy, FakeEngine([]))
    vet_compose_ownership(ctx)  # type: ignore[arg-type]
    model = ctx.vetted.compose_model
    assert model["services"]["web"]["labels"] == {"team": "x", OWNER: "default", "gatekeeper.created": "default"}
    assert model["services"]["web"]["build"]["labels"] == {OWNER: "default"}
    assert model["volumes"]["data"]["labels"] == {OWNER: "default"}
    assert "labels" not in model["volumes"]["ext"]  # external: compose does not create it
    assert model["networks"]["default"]["labels"] == {OWNER: "default"}


@pytest.mark.parametrize("labels", [{"gatekeeper.owner": "bot"}, ["gatekeeper.owner=bot"], {"Gatekeeper.x": "1"}])
def test_compose_labels_under_gatekeeper_are_refused(labels: object, policy) -> None:  # type: ignore[no-untyped-def]
    ctx = compose_ctx("compose up", project(labels), policy, FakeEngine([]))
    with pytest.raises(Denied) as denied:
        vet_compose_ownership(ctx)  # type: ignore[arg-type]
    assert denied.value.rule == "reserved-label"


def project_engine(owner: dict[str, str], extra: list[Obj] = ()) -> FakeEngine:  # type: ignore[assignment]
    member = {"com.docker.compose.project": "app", **owner}
    return FakeEngine([Obj("container", "9" * 64, "app-web-1", member), Obj("image", APP, "app:1", {OWNER: "default"}), *extra])


@pytest.mark.parametrize("owner", [{}, {OWNER: "default"}], ids=["no owner label", "owner label inherited from the image"])
@pytest.mark.parametrize("canonical", ["compose down", "compose up", "compose stop", "compose rm", "compose kill", "compose logs"])
def test_compose_on_someone_elses_project_is_refused(canonical: str, owner: dict[str, str], policy) -> None:  # type: ignore[no-untyped-def]
    ctx = compose_ctx(canonical, project(), policy, project_engine(owner))
    with pytest.raises(Denied) as denied:
        vet_compose_ownership(ctx)  # type: ignore[arg-type]
    assert denied.value.rule == "scope-owned" and "app-web-1" in denied.value.message


def test_compose_down_on_own_project_is_allowed(policy) -> None:  # type: ignore[no-untyped-def]
    engine = project_engine(MINE, [Obj("network", "n" * 64, "app_default", {OWNER: "default"})])
    vet_compose_ownership(compose_ctx("compose down", project(), policy, engine))  # type: ignore[arg-type]


def test_compose_down_v_refuses_a_foreign_volume_of_the_same_name(policy) -> None:  # type: ignore[no-untyped-def]
    engine = project_engine(MINE, [Obj("volume", "app_data", "app_data", {})])
    volumes = [SimpleNamespace(flag=Flag("volumes", "v", False, "ok", ""), value=None)]
    with pytest.raises(Denied) as denied:
        vet_compose_ownership(compose_ctx("compose down", project(), policy, engine, volumes))  # type: ignore[arg-type]
    assert "app_data" in denied.value.message


def test_compose_down_rmi_is_refused_under_owned(policy) -> None:  # type: ignore[no-untyped-def]
    rmi = [SimpleNamespace(flag=Flag("rmi", "", True, "ok", ""), value="all")]
    with pytest.raises(Denied) as denied:
        vet_compose_ownership(compose_ctx("compose down", project(), policy, project_engine(MINE), rmi))  # type: ignore[arg-type]
    assert "--rmi" in denied.value.message


def test_compose_stop_of_a_protected_own_container_is_refused(policy) -> None:  # type: ignore[no-untyped-def]
    engine = project_engine(MINE)
    engine.objects[0].name = "keep-db"
    with pytest.raises(Denied) as denied:
        vet_compose_ownership(compose_ctx("compose stop", project(), policy, engine))  # type: ignore[arg-type]
    assert denied.value.rule == "protected"


def test_static_world_assumes_the_agent_owns_what_it_names(policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker rm -f web db", policy, StaticWorld())
    assert decision.allowed and decision.argv == ["docker", "rm", "-f", "web", "db"]


def test_every_command_with_a_grammar_is_classified() -> None:
    """A new grammar table must say how its command meets the ownership rails."""
    from gatekeeper.grammar.compose_flags import COMPOSE_FLAGS
    from gatekeeper.grammar.docker_flags import FLAGS

    classified = (
        set(ownership.TARGETED) | set(ownership.LISTED) | ownership.LABELLED | set(ownership.PRUNED)
        | set(ownership.UNSCOPED_PRUNES) | ownership.NO_TARGETS
    )
    assert set(FLAGS) - classified == set()
    compose_known = compose_ownership.READ_ONLY | compose_ownership.REMOVING | set(compose_ownership.SCOPED)
    assert set(COMPOSE_FLAGS) - compose_known <= {"compose build", "compose pull", "compose start"}  # project-checked, not removing


def test_volume_and_network_inspect_follow_the_inspect_scope(tmp_path: Path) -> None:
    owned = with_policy(tmp_path, '[scope]\ninspect = "owned"\n[commands]\nallowed = ["volume inspect", "network inspect"]\n')
    engine = FakeEngine([Obj("volume", "mine", "mine", {OWNER: "default"}), Obj("volume", "pg", "pg", {})])
    assert decided("docker volume inspect mine", owned, engine).allowed
    assert decided("docker volume inspect mine pg", owned, engine).rule == "scope-owned"


TWO_LABELS = POLICY_TEXT.replace('labels = ["vital=yes"]', 'labels = ["vital=yes", "keep=1"]')


@pytest.mark.parametrize("command", ["docker container prune -f", "docker image prune -a -f"])
def test_a_prune_with_several_protected_labels_looks_for_each(command: str, tmp_path: Path) -> None:
    """docker ANDs label! filters: with two protected labels a prune keeps only the objects that
    carry both, so an owned object with one of them would go. Control: one protected label is a
    filter of the engine's (allowed, `label!=` on the argv); two, with an owned object carrying
    one: refused naming it; two, none carrying one: allowed."""
    one = decided(command, load_policy(str(write(tmp_path / "one.toml", POLICY_TEXT))),
                  FakeEngine([o for o in ENGINE if o.name not in ("keep-db", "gold:1")]))
    assert one.allowed, one.reason
    two = load_policy(str(write(tmp_path / "two.toml", TWO_LABELS)))
    kept = Obj("container", "a5" + "0" * 62, "kept", {**MINE, "keep": "1"})
    kept_image = Obj("image", "sha256:f6" + "0" * 62, "kept:1", {OWNER: "default", "keep": "1"})
    unprotected = [o for o in ENGINE if o.name not in ("keep-db", "gold:1", "vital")]
    refused = decided(command, two, FakeEngine([*unprotected, kept, kept_image]))
    assert (refused.allowed, refused.rule) == (False, "protected"), refused.reason
    assert "'keep=1'" in refused.reason
    assert decided(command, two, FakeEngine(unprotected)).allowed


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
