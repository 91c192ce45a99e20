"""Whose layers a build may reuse (gatekeeper.build_cache), both layers.

The classic builder reuses any local image's layer whose parent and step match: the agent's
build FROM a shared base with the operator's RUN line (read from `docker image history`) got
the operator's layer (tests/e2e/test_build_cache.py). Every build gets the agent's own images
as its only cache sources, or no cache; a cache source it names must be an image it may use.
Tables on both sides; the engines are fakes (tests/test_image_scope.py's).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from gatekeeper.build_cache import OWNED_LIMIT, cache_sources
from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import cid
from tests.owner_label import build_records_answer
from tests.test_build_add_url import context_tar
from tests.test_image_scope import BUILT, IMAGES, LENT, RULE, ApiImages, Engine
from tests.test_proxy_vet import request

MINE_ID = IMAGES["mine:1"][0]
DOCKERFILE = b"FROM lent:1\nRUN make\n"


class Owning(Engine):
    """tests/test_image_scope.py's engine; `image ls` of the owner label answers `owned`."""

    def __init__(self, owned: list[str], built: list[str] | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.owned = owned  # labelled as the agent's
        self.built = set(owned if built is None else built) | BUILT  # and named by its build records

    def run_docker(self, policy, args, stdin=None, timeout=60.0):  # type: ignore[no-untyped-def]
        records = build_records_answer(args, self.built)
        if records is not None:
            return records
        if args[:2] == ["image", "ls"]:
            assert "label=gatekeeper.owner=default" in args
            return 0, "".join(f"{ident}\n" for ident in self.owned).encode(), b""
        return super().run_docker(policy, args, stdin, timeout)


def cli(command: str, owned: list[str]) -> tuple[bool, str, list[str]]:
    decision = decide(command, LENT, Owning(owned, stdin=DOCKERFILE))
    return decision.allowed, decision.rule, list(decision.argv or [])


def test_pure_sources_named_first_owned_after_each_once_and_capped() -> None:
    assert cache_sources([], []) == []
    owned = ["sha256:a", "sha256:a", "sha256:b"]
    assert cache_sources(["lent:1"], owned) == ["lent:1", "sha256:a", "sha256:b"]
    many = [f"sha256:{i}" for i in range(OWNED_LIMIT + 5)]
    assert cache_sources([], many) == many[:OWNED_LIMIT]


# (command, the agent's images on the engine, the words gatekeeper adds right after `build`)
CLI_ADDED = [
    ("docker build -t ai-x -", [], ["--no-cache"]),
    ("docker build -t ai-x -", [MINE_ID], [f"--cache-from={MINE_ID}"]),
    ("docker build -t ai-x -", [MINE_ID, "sha256:" + "9" * 64], [f"--cache-from={MINE_ID}",
                                                                  "--cache-from=sha256:" + "9" * 64]),
    ("docker build --cache-from lent:1 -t ai-x -", [], []),  # named sources alone: only those
    ("docker build --cache-from mine:1 -t ai-x -", [MINE_ID], [f"--cache-from={MINE_ID}"]),
    ("docker build --no-cache -t ai-x -", [MINE_ID], []),  # no cache at all: nothing to scope
    ("docker build --no-cache=false -t ai-x -", [], ["--no-cache"]),
]


@pytest.mark.parametrize(("command", "owned", "added"), CLI_ADDED,
                         ids=[f"{c} {len(o)}" for c, o, _ in CLI_ADDED])
def test_cli_layer_gives_the_build_only_the_agents_images(command: str, owned: list[str],
                                                          added: list[str]) -> None:
    allowed, rule, argv = cli(command, owned)
    assert allowed, rule
    label = argv.index("--label")  # what other rails insert there ([limits] defaults) aside
    inserted = [word for word in argv[2:label] if word.startswith(("--cache-from", "--no-cache"))]
    assert argv[:2] == ["docker", "build"] and inserted == added


# (command): a cache source the agent may not use; the control lends it
CLI_REFUSED = [
    "docker build --cache-from op:1 -t ai-x -",
    "docker build --cache-from=sha256:" + "a" * 64 + " -t ai-x -",
    "docker build --cache-from mine:1,op:1 -t ai-x -",  # a StringSlice: both are sources
    "docker image build --cache-from botpulled:1 -t ai-x -",
]


@pytest.mark.parametrize("command", CLI_REFUSED)
def test_cli_layer_refuses_a_cache_source_the_agent_may_not_use(command: str) -> None:
    allowed, rule, _ = cli(command, [MINE_ID])
    assert (allowed, rule) == (False, RULE)
    from tests.test_image_scope import policy

    lent_too = policy(shared=["docker.io/library/lent", "docker.io/library/op",
                              "docker.io/library/botpulled"])
    assert decide(command, lent_too, Owning([MINE_ID], stdin=DOCKERFILE)).allowed  # control


@pytest.mark.parametrize("through_proxy", [False, True])
def test_compose_builds_run_without_cache_on_the_engines_socket(through_proxy: bool,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """compose's classic builder sends no cache sources (only no-cache): on the engine's own
    socket every service build gets no_cache; behind the proxy (which scopes each build) not."""
    from gatekeeper.vetting.build_cache import scope_model_cache

    monkeypatch.setattr(type(LENT), "through_proxy", lambda self: through_proxy)

    class Ctx:
        policy = LENT
        world = Owning([MINE_ID])

    def model(cache_from: list[str] | None = None) -> dict:
        build = {"context": "/home/ai-worker/app"} if cache_from is None else \
            {"context": "/home/ai-worker/app", "cache_from": cache_from}
        return {"services": {"app": {"build": build}, "db": {"image": "lent:1"}}}

    built = model(["lent:1", "mine:1"])
    scope_model_cache(Ctx(), built)  # type: ignore[arg-type]
    expected = {"context": "/home/ai-worker/app", "cache_from": ["lent:1", "mine:1"]}
    no_cache = {} if through_proxy else {"no_cache": True}
    assert built["services"]["app"]["build"] == {**expected, **no_cache}
    assert built["services"]["db"] == {"image": "lent:1"}
    with pytest.raises(Denied) as refused:
        scope_model_cache(Ctx(), model(["op:1"]))  # type: ignore[arg-type]
    assert refused.value.rule == RULE and "build.cache_from" in str(refused.value)


# ---------------------------------------------------------------- the API layer


def api(query: str, profile: str = "default") -> tuple[str, dict[str, list[str]]]:
    req = request("POST", f"/v1.47/build?t=ai-new%3A1{query}", profile=profile)
    req.body = context_tar({"Dockerfile": "FROM lent:1\nRUN make\n"}, compression="gz")
    verdict = vet_api_request(req, LENT, ApiImages())
    forwarded = parse_qs(urlsplit(verdict.target or "").query) if verdict.allowed else {}
    return verdict.rule, forwarded



def test_api_layer_gives_the_build_only_the_agents_images() -> None:
    rule, forwarded = api("")
    assert rule == "allowed"
    assert json.loads(forwarded["cachefrom"][0]) == ["sha256:" + cid("1")]
    assert "nocache" not in forwarded
    rule, forwarded = api("&cachefrom=" + json.dumps(["lent:1"]))
    assert (rule, json.loads(forwarded["cachefrom"][0])) == ("allowed", ["lent:1", "sha256:" + cid("1")])


def test_api_layer_without_the_agents_images_builds_without_cache() -> None:
    rule, forwarded = api("", profile="nobody")
    assert rule == "allowed"
    assert forwarded["nocache"] == ["1"] and "cachefrom" not in forwarded


@pytest.mark.parametrize("source", ["op:1", "sha256:" + "a" * 64, "postgres:15", "botpulled:1"])
def test_api_layer_refuses_a_cache_source_the_agent_may_not_use(source: str) -> None:
    assert api("&cachefrom=" + json.dumps(["mine:1", source]))[0] == RULE
    assert api("&cachefrom=" + json.dumps(["mine:1", "lent:1"]))[0] == "allowed"  # control


# ---------------------------------------------------------------- the other direction: extra hosts

KEY_RULE = "build-cache-key"


@pytest.mark.parametrize("command", ["docker build --add-host updates.example:10.0.0.9 -t ai-x -",
                                     "docker image build --add-host=a:1.2.3.4 --no-cache -t ai-x -"])
def test_cli_layer_refuses_extra_hosts_in_builds(command: str) -> None:
    """--add-host is left out of the steps' cache keys: the agent's layer of the operator's
    fetch step, fetched from its own server, would be the operator's next cache hit."""
    allowed, rule, _ = cli(command, [MINE_ID])
    assert (allowed, rule) == (False, KEY_RULE)
    plain = command.replace("--add-host updates.example:10.0.0.9 ", "").replace("--add-host=a:1.2.3.4 ", "")
    assert cli(plain, [MINE_ID])[0]  # control: the same build without the extra host
    reason = decide(command, LENT, Owning([MINE_ID], stdin=DOCKERFILE)).reason
    assert "write the address into the RUN step itself" in reason


@pytest.mark.parametrize("hosts", [["updates.example=10.0.0.9"], {"updates.example": "10.0.0.9"}])
def test_compose_refuses_build_extra_hosts(hosts: object) -> None:
    from gatekeeper.vetting.build_cache import scope_model_cache

    class Ctx:
        policy = LENT
        world = Owning([MINE_ID])

    with pytest.raises(Denied) as refused:
        scope_model_cache(Ctx(), {"services": {"app": {"build": {"context": ".", "extra_hosts": hosts}}}})  # type: ignore[arg-type]
    assert refused.value.rule == KEY_RULE
    scope_model_cache(Ctx(), {"services": {"app": {"build": {"context": "."}, "extra_hosts": hosts}}})  # type: ignore[arg-type]  # control: the container's own extra hosts


def test_api_layer_refuses_extra_hosts_in_builds() -> None:
    assert api("&extrahosts=updates.example%3A10.0.0.9")[0] == KEY_RULE
    assert api("&extrahosts=")[0] == "allowed"  # control: none


# ---------------------------------------------------------------- every input outside the key

def test_each_keyless_input_is_a_real_spelling_at_each_layer() -> None:
    """The table names docker build's flags, POST /build's query keys and compose's build keys
    as they are (a misspelt entry would refuse nothing)."""
    from gatekeeper.build_cache import KEYLESS
    from gatekeeper.grammar.build_flags import BUILD
    from gatekeeper.proxy.endpoints import BUILD_QUERY
    from gatekeeper.vetting.compose_project import BUILD_KEYS

    for entry in KEYLESS:
        assert f"--{entry.flag}" in BUILD and entry.query in BUILD_QUERY.split(), entry.flag
        assert not entry.compose or entry.compose in BUILD_KEYS, entry.compose


def model_refusal(build: dict[str, object]) -> str:
    from gatekeeper.vetting.build_cache import scope_model_cache

    class Ctx:
        policy = LENT
        world = Owning([MINE_ID])

    try:
        scope_model_cache(Ctx(), {"services": {"app": {"build": {"context": ".", **build}}}})  # type: ignore[arg-type]
    except Denied as refused:
        return f"{refused.rule}: {refused}"
    return "allowed"


# (a compose service's build keys, refused?)
COMPOSE_KEYED = [
    ({"network": "none"}, True),
    ({"network": "ai-net"}, True),
    ({"network": "bridge"}, False),
    ({"network": "default"}, False),
    ({"ulimits": {"nofile": {"soft": 64, "hard": 64}}}, True),
    ({"shm_size": 1048576}, True),
    ({"args": {"http_proxy": "http://10.0.0.9:80"}}, True),
    ({"args": ["HTTPS_PROXY=http://10.0.0.9:80"]}, True),
    ({"args": {"all_proxy": None}}, True),
    ({"args": {"PROXY": "http://10.0.0.9:80"}}, False),
    ({"args": ["VERSION=1"]}, False),
    ({"extra_hosts": ["updates.example=10.0.0.9"]}, True),
    ({}, False),
]


@pytest.mark.parametrize(("build", "refused"), COMPOSE_KEYED, ids=[str(b) for b, _ in COMPOSE_KEYED])
def test_compose_refuses_build_inputs_outside_the_key(build: dict[str, object], refused: bool) -> None:
    verdict = model_refusal(build)
    assert verdict.startswith(KEY_RULE) if refused else verdict == "allowed", verdict


def test_the_refusal_says_what_to_do_instead() -> None:
    reason = decide("docker build --build-arg http_proxy=http://10.0.0.9 -t ai-x -", LENT,
                    Owning([MINE_ID], stdin=DOCKERFILE)).reason
    assert "out of the steps' cache keys" in reason and "a build argument of another name" in reason
    reason = model_refusal({"network": "ai-net"})
    assert "by address in the RUN step itself" in reason
    assert "builds use the default network" in model_refusal({"network": "none"})


@pytest.mark.parametrize("query", ["&networkmode=none", "&ulimits=%5B%7B%22Name%22%3A%22nproc%22%7D%5D",
                                   "&shmsize=1048576", "&cpusetcpus=0",
                                   "&buildargs=%7B%22https_proxy%22%3A%22x%22%7D"])
def test_api_layer_refuses_build_inputs_outside_the_key(query: str) -> None:
    assert api(query)[0] == KEY_RULE
    assert api("")[0] == "allowed"  # control: the same build without it


# (the build's flags, refused?) under LENT's [limits]: default_memory 1g, default_cpus 1.0, caps 2g / 2.0
RESOURCE_FLOORS = [
    ("--memory 64m", True),
    ("-m 1023m", True),
    ("--memory 1g", False),
    ("--memory 1536m", False),
    ("--memory 1g --memory-swap 1g", True),
    ("--memory 1g --memory-swap 2g", False),
    ("--memory-swap 1g", True),
    ("--cpu-shares 2", True),
    ("--cpu-shares 1024", False),
    ("", False),
]


@pytest.mark.parametrize(("flags", "refused"), RESOURCE_FLOORS, ids=[f or "none" for f, _ in RESOURCE_FLOORS])
def test_a_builds_memory_and_cpu_are_never_under_the_defaults(flags: str, refused: bool) -> None:
    """A step the agent's build starves (memory, CPU) that tolerates failing makes a degraded layer
    under the same key: the agent may give more than the defaults (within the caps), never less.
    (--cpu-quota/--cpu-period: refused by the caps here, limit-cpus; the API's floor: corpus/api.txt.)"""
    allowed, rule, _ = cli(f"docker build {flags} -t ai-x -", [MINE_ID])
    assert (allowed, rule) == (not refused, KEY_RULE if refused else "allowed")

