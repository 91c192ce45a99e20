# A table reads best with one case a line; such lines run long.
# ruff: noqa: E501

"""[images] shared: which images the agent may use (gatekeeper.image_scope), both layers.

The operator's local image (built or committed on the engine, no registry digest, no owner
label) carries its files and its ENV: `docker run IMAGE env` prints what `image inspect`
redacts. The agent may use its own images (owner label, or a pull record of its profile),
images with a digest from a registry [images] allowed admits, and those [images] shared
lists. Each table has cases on both sides; the engine is a fake (tests/api_engine.py for
the API layer, a StaticWorld answering the CLI layer's questions).
"""

from __future__ import annotations

import json

import pytest

from gatekeeper.decision import decide
from gatekeeper.engine_objects import QUERY_FORMATS
from gatekeeper.errors import Denied
from gatekeeper.image_scope import ImageFacts, may_use
from gatekeeper.policy import Policy
from gatekeeper.proxy.vet import vet_api_request
from gatekeeper.vetting.images import TRIGGERS_FORMAT
from tests.api_engine import FakeEngine
from tests.fakes import StaticWorld
from tests.owner_label import api_build_records, build_records_answer
from tests.test_build_add_url import context_tar
from tests.test_proxy_vet import OVERRIDES, make_policy, request

RULE = "image-not-shared"
MINE = {"gatekeeper.owner": "default"}
DIGEST = "@sha256:" + "6" * 64


def policy(allowed: list[str] | None = None, shared: list[str] | None = None) -> Policy:
    return make_policy({**OVERRIDES, "images": {"allowed": allowed or [], "shared": shared or []}})


def facts(tags: list[str], digests: list[str] = (), labels: dict[str, str] | None = None) -> ImageFacts:  # type: ignore[assignment]
    return ImageFacts("sha256:" + "1" * 64, tags, list(digests), labels or {})


# (what, allowed, shared, the image, pulled by this profile, why it may be used or "" refused)
DECISIONS = [
    ("built by the agent", [], [], facts(["app:1"], labels=MINE), False, "owned"),
    ("built by another profile", [], [], facts(["app:1"], labels={"gatekeeper.owner": "bot"}), False, ""),
    ("pulled by the agent (a record)", ["ghcr.io/**"], [], facts(["x:1"]), True, "pulled"),
    ("the operator's local build", [], [], facts(["app:1"]), False, ""),
    ("no tag, no digest", [], [], facts([]), False, ""),
    ("from a registry, no list: any", [], [], facts(["alpine:3"], ["alpine" + DIGEST]), False, "registry"),
    ("from a listed registry", ["docker.io/library/*"], [], facts(["alpine:3"], ["alpine" + DIGEST]), False,
     "registry"),
    ("from a registry off the list", ["docker.io/library/*"], [],
     facts(["evil:1"], ["ghcr.io/evil/x" + DIGEST]), False, ""),
    ("a digest's tag only looks listed", ["docker.io/library/*"], [],
     facts(["alpine:3"], ["ghcr.io/evil/alpine" + DIGEST]), False, ""),
    ("lent by [images] shared", [], ["docker.io/library/app"], facts(["app:1"]), False, "shared"),
    ("lent by a glob", [], ["registry.local/team/*"], facts(["registry.local/team/app:2"]), False, "shared"),
    ("a glob never crosses '/'", [], ["docker.io/library/*"], facts(["myorg/app:1"]), False, ""),
    ("another name lent, not this", [], ["docker.io/library/app"], facts(["app2:1"]), False, ""),
    ("one of its tags lent", [], ["docker.io/library/app"], facts(["op:1", "app:1"]), False, "shared"),
]


@pytest.mark.parametrize(("allowed", "shared", "image", "pulled", "why"), [d[1:] for d in DECISIONS],
                         ids=[d[0] for d in DECISIONS])
def test_may_use(allowed: list[str], shared: list[str], image: ImageFacts, pulled: bool, why: str) -> None:
    assert may_use(policy(allowed, shared), image, pulled=pulled) == why


# ---------------------------------------------------------------- the CLI layer

# tag -> (ID, RepoDigests, labels); pull records: (profile, ID)
IMAGES = {
    "op:1": ("sha256:" + "a" * 64, [], {}),
    "lent:1": ("sha256:" + "b" * 64, [], {}),
    "mine:1": ("sha256:" + "c" * 64, [], MINE),
    "fetched:1": ("sha256:" + "d" * 64, ["fetched" + DIGEST], {}),
    "pulled:1": ("sha256:" + "e" * 64, [], {}),
    "botpulled:1": ("sha256:" + "f" * 64, [], {}),
    # the operator's pull of the ID and tag of the agent's pull, removed since: a stale record
    "repulled:1": ("sha256:" + "9" * 64, [], {}),
    # the operator's build FROM mine:1: it inherits the owner label, no build record names it
    "heir:1": ("sha256:" + "7" * 64, [], MINE),
    "mine-again:1": ("sha256:" + "c" * 64, [], MINE),  # a re-tag of mine:1: the same ID, the same record
}
TAGGED = "2026-11-30T10:00:00.123456789Z"  # every image's LastTagTime but repulled:1's
# (profile, ID, LastTagTime pin)
PULLS = [("default", "sha256:" + "e" * 64, TAGGED), ("bot", "sha256:" + "f" * 64, TAGGED),
         ("default", "sha256:" + "9" * 64, TAGGED)]


def tag_time(tag: str) -> str:
    return "2026-11-30T12:00:00Z" if tag == "repulled:1" else TAGGED
BUILT = {"sha256:" + "c" * 64}  # the agent's build records (gatekeeper.build_records)
APP = "/home/ai-worker/app"


class Engine(StaticWorld):
    """The CLI layer's engine questions answered from IMAGES and PULLS."""

    def run_docker(self, policy, args, stdin=None, timeout=60.0):  # type: ignore[no-untyped-def]
        if args[:2] == ["image", "inspect"] and args[3] in (QUERY_FORMATS["image"], TRIGGERS_FORMAT):
            words = args[5:]
            found = [self.find(word) for word in words]
            lines = [self.line(args[3], tag) for tag in found if tag]
            return (0 if all(found) else 1), "".join(lines).encode(), b"Error: No such image"
        built = build_records_answer(args, BUILT)
        if built is not None:
            return built
        if args[:2] == ["volume", "ls"]:
            filters = dict(a.removeprefix("label=").split("=", 1) for a in args if a.startswith("label="))
            hits = [i for p, i, pin in PULLS if filters == {"gatekeeper.pulled-by": p, "gatekeeper.pulled-image": i,
                                                             "gatekeeper.pulled-tag-time": pin}]
            return 0, "".join("tag|\n" for _ in hits).encode(), b""
        return super().run_docker(policy, args, stdin, timeout)

    @staticmethod
    def find(word: str) -> str:
        for tag, (ident, _, _) in IMAGES.items():
            if word in (tag, ident) or (len(word) >= 12 and ident[7:].startswith(word)):
                return tag
        return ""

    @staticmethod
    def line(form: str, tag: str) -> str:
        ident, digests, labels = IMAGES[tag]
        facts = f"{ident}\t{json.dumps([tag])}\t{json.dumps(digests)}\t{json.dumps(labels or None)}\t{json.dumps(tag_time(tag))}"
        if form == TRIGGERS_FORMAT:
            return f"linux/amd64\tnull\t{facts}\n"
        return f"{ident}\t{json.dumps([tag])}\t{json.dumps(labels or None)}\t{json.dumps(digests)}\t{json.dumps(tag_time(tag))}\n"


def world(dockerfile: str = "FROM mine:1\n") -> Engine:
    return Engine(files={f"{APP}/Dockerfile": dockerfile.encode()})


LENT = policy(shared=["docker.io/library/lent"])

# (command, Dockerfile of the build context): refused with image-not-shared
CLI_REFUSED = [
    ("docker run --rm op:1 env", ""),
    ("docker container create op:1", ""),
    ("docker run --rm " + "a" * 12 + " env", ""),  # by short ID
    ("docker run --rm sha256:" + "a" * 64 + " env", ""),
    ("docker run --rm botpulled:1 env", ""),  # another profile's pull is not this one's
    ("docker run --rm repulled:1 env", ""),  # a stale record: the operator's image came back since
    (f"docker build {APP}", "FROM mine:1\nCOPY --from=repulled:1 /x /y\n"),
    ("docker run --rm --mount type=image,source=op:1,target=/m mine:1 true", ""),
    (f"docker build {APP}", "FROM op:1\n"),
    (f"docker build {APP}", "FROM mine:1\nCOPY --from=op:1 /secret /x\n"),
    (f"docker build {APP}", "FROM mine:1\nRUN --mount=type=bind,from=op:1,target=/o cat /o/secret\n"),
    (f"docker build {APP}", "FROM mine:1 AS a\nFROM fetched:1\nCOPY --from=$IMG /x /y\n"),
    (f"docker build --build-context x=docker-image://op:1 {APP}", "FROM mine:1\n"),
]
# the same routes with images the agent may use
CLI_ALLOWED = [
    ("docker run --rm mine:1 env", ""),
    ("docker run --rm fetched:1 env", ""),
    ("docker run --rm pulled:1 env", ""),
    ("docker run --rm lent:1 env", ""),
    ("docker run --rm --mount type=image,source=lent:1,target=/m mine:1 true", ""),
    ("docker run --rm --mount type=image,source=nowhere:1,target=/m mine:1 true", ""),  # not on the engine
    (f"docker build {APP}", "FROM lent:1\n"),
    (f"docker build {APP}", "FROM mine:1 AS a\nFROM fetched:1\nCOPY --from=a /x /y\nCOPY --from=0 /x /z\n"),
    (f"docker build {APP}", "FROM mine:1\nCOPY --from=pulled:1 /x /y\n"),
    (f"docker build {APP}", "FROM scratch\nCOPY --from=nowhere:2 /x /y\n"),  # the builder pulls it
    (f"docker build --build-context x=docker-image://fetched:1 {APP}", "FROM mine:1\n"),
]


@pytest.mark.parametrize(("command", "dockerfile"), CLI_REFUSED, ids=[f"{c} | {d!r}" for c, d in CLI_REFUSED])
def test_cli_layer_refuses_the_operators_images(command: str, dockerfile: str) -> None:
    decision = decide(command, LENT, world(dockerfile))
    assert (decision.allowed, decision.rule) == (False, RULE), decision.reason
    if "$" not in dockerfile:  # control: the same command once op:1 is lent too
        lent_too = policy(shared=["docker.io/library/lent", "docker.io/library/op",
                                  "docker.io/library/botpulled", "docker.io/library/repulled"])
        assert decide(command, lent_too, world(dockerfile)).allowed


@pytest.mark.parametrize(("command", "dockerfile"), CLI_ALLOWED, ids=[f"{c} | {d!r}" for c, d in CLI_ALLOWED])
def test_cli_layer_allows_the_agents_registries_and_lent_images(command: str, dockerfile: str) -> None:
    decision = decide(command, LENT, world(dockerfile or "FROM mine:1\n"))
    assert decision.allowed, decision.reason


def test_compose_build_contexts_follow_the_scope(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A service's build.additional_contexts docker-image:// is read into the build."""
    from gatekeeper.vetting import images

    class Ctx:
        policy = LENT
        world = world()
        located = type("L", (), {"canonical": "compose build"})()

    def service(image: str) -> dict:
        return {"dockerfile_inline": "FROM mine:1\n", "additional_contexts": {"x": f"docker-image://{image}"}}

    images.vet_model_build(Ctx(), service("lent:1"), [], "app")  # type: ignore[arg-type]  # control
    with pytest.raises(Denied) as refused:
        images.vet_model_build(Ctx(), service("op:1"), [], "app")  # type: ignore[arg-type]
    assert refused.value.rule == RULE


def test_the_refusal_says_what_to_do() -> None:
    reason = decide("docker run --rm op:1 env", LENT, world()).reason
    assert "'op:1'" in reason and "[images] shared" in reason and "pull it from an allowed registry" in reason


# ---------------------------------------------------------------- the API layer


class ApiImages(FakeEngine):
    """tests/api_engine.py's engine with IMAGES beside its own (alpine carries a digest, postgres:15
    is the operator's local image) and PULLS as pull records."""

    def one(self, path: str) -> tuple[int, object]:
        for tag, (ident, digests, labels) in IMAGES.items():
            if path in (f"/images/{tag}/json", f"/images/{ident}/json"):
                return 200, {"Id": ident, "RepoTags": [tag], "RepoDigests": digests, "Os": "linux",
                             "Architecture": "amd64", "Config": {"Labels": labels or None},
                             "Metadata": {"LastTagTime": tag_time(tag)}}
        return super().one(path)

    def get_json(self, target: str) -> tuple[int, object]:
        if target.startswith("/volumes?filters="):
            from urllib.parse import unquote

            wanted = json.loads(unquote(target.partition("=")[2]))["label"]
            built = api_build_records(list(wanted), BUILT | {"sha256:" + "1" * 64})  # and myapp:latest
            if built is not None:
                return 200, {"Volumes": built}
            records = [{"Labels": {"gatekeeper.pulled-by": p, "gatekeeper.pulled-image": i, "gatekeeper.pulled-tag": "x",
                                   "gatekeeper.pulled-tag-time": pin}} for p, i, pin in PULLS
                       if {f"gatekeeper.pulled-by={p}", f"gatekeeper.pulled-image={i}",
                           f"gatekeeper.pulled-tag-time={pin}"} == set(wanted)]
            return 200, {"Volumes": records}
        return super().get_json(target)


def create(image: str, mounts: list[dict[str, object]] | None = None, profile_policy: Policy = LENT) -> str:
    body = {"Image": image, "HostConfig": {"Mounts": mounts} if mounts else {}}
    verdict = vet_api_request(request("POST", "/v1.47/containers/create", json.dumps(body)), profile_policy,
                              ApiImages())
    return verdict.rule


def build(dockerfile: str, profile_policy: Policy = LENT) -> str:
    req = request("POST", "/v1.47/build?t=newthing%3A1")
    req.body = context_tar({"Dockerfile": dockerfile, "app": "x"}, compression="gz")
    return vet_api_request(req, profile_policy, ApiImages()).rule  # type: ignore[arg-type]


API_CASES = [
    # (what, the request's rule)
    ("create of the operator's image", lambda: create("op:1"), RULE),
    ("... by ID", lambda: create("sha256:" + "a" * 64), RULE),
    ("... postgres:15 (the fake engine's own local image)", lambda: create("postgres:15"), RULE),
    ("... another profile's pull", lambda: create("botpulled:1"), RULE),
    ("... the operator's image under a stale record of the agent's", lambda: create("repulled:1"), RULE),
    ("an image mount of it", lambda: create("mine:1", [{"Type": "image", "Source": "op:1", "Target": "/m"}]),
     RULE),
    ("build FROM it", lambda: build("FROM op:1\n"), RULE),
    ("build COPY --from it", lambda: build("FROM mine:1\nCOPY --from=op:1 /s /x\n"), RULE),
    ("control: its own image", lambda: create("mine:1"), "allowed"),
    ("control: a registry's image", lambda: create("fetched:1"), "allowed"),
    ("control: alpine (a digest)", lambda: create("alpine:latest"), "allowed"),
    ("control: its pull", lambda: create("pulled:1"), "allowed"),
    ("control: lent", lambda: create("lent:1"), "allowed"),
    ("control: not on the engine (the client pulls it first)", lambda: create("nowhere:1"), "allowed"),
    ("control: a lent image mount", lambda: create("mine:1", [{"Type": "image", "Source": "lent:1",
                                                               "Target": "/m"}]), "allowed"),
    ("control: build FROM lent", lambda: build("FROM lent:1\n"), "allowed"),
    ("control: COPY --from a stage", lambda: build("FROM lent:1 AS a\nFROM mine:1\nCOPY --from=a /s /x\n"),
     "allowed"),
    ("control: the operator's image lent", lambda: create("op:1", profile_policy=policy(
        shared=["docker.io/library/op"])), "allowed"),
]


@pytest.mark.parametrize(("case", "rule"), [(c[1], c[2]) for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_layer(case, rule: str) -> None:  # type: ignore[no-untyped-def]
    assert case() == rule
