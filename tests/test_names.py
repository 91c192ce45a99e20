# One case per line keeps each command beside its expected decision; such lines run long.
# ruff: noqa: E501

"""[names] prefix (gatekeeper.name_prefix): every name the agent gives starts with the prefix.

A name the agent takes before the operator uses it turns the operator's later work into
the agent's object (the operator's database in the agent's volume, the agent's image run as
`postgres:16`, compose adopting the agent's containers). Each table lists the spellings that
give a name, in both layers (the CLI layer, gatekeeper.vetting.names; the API layer,
gatekeeper.proxy.names), allowed prefixed and refused without; each refusal is allowed again
with `prefix = ""` (the control: the rule, not something else, refuses it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper import name_prefix
from gatekeeper.decision import decide
from gatekeeper.errors import Denied, PolicyError
from gatekeeper.policy import DEFAULTS, Policy, load_policy, merge
from gatekeeper.proxy import names as proxy_names
from gatekeeper.vetting import NAMING
from gatekeeper.vetting.names import NAMING as NAMES_NAMING
from gatekeeper.vetting.names import check_compose_names
from tests.api_engine import FakeEngine
from tests.test_namespaces import FILES, Engine
from tests.test_proxy_vet import request

# ---------------------------------------------------------------- the pure rule

# (kind, name) the agent may give under prefix "ai-", and those it may not.
GIVEN_OK = [
    ("container", "ai-web"), ("container", "/ai-web"), ("container", "0123456789ab_ai-web-1"),
    ("volume", "ai-pgdata"), ("network", "ai-backend"), ("image", "ai-app:1"), ("image", "ai-app"),
    ("image", "docker.io/library/ai-app:1"), ("image", "ai-registry.example:5000/app"),
    ("compose project", "ai-shop"),
]
GIVEN_REFUSED = [
    ("container", "web"), ("container", "/web"), ("container", "0123456789ab_web-1"), ("container", "0123456789ab-ai-web"),
    ("container", "AI-web"), ("volume", "pgdata"), ("volume", "pgdata-ai-"), ("network", "backend"),
    ("image", "postgres:16"), ("image", "docker.io/library/postgres:16"), ("image", "library/postgres"),
    ("image", "registry.example/ai-app"), ("compose project", "app"), ("compose project", ""),
]


@pytest.mark.parametrize(("kind", "name"), GIVEN_OK)
def test_prefixed_names_pass(kind: str, name: str) -> None:
    assert name_prefix.refusal("ai-", kind, name, "x") is None


@pytest.mark.parametrize(("kind", "name"), GIVEN_REFUSED)
def test_names_without_the_prefix_are_refused(kind: str, name: str) -> None:
    message = name_prefix.refusal("ai-", kind, name, "x")
    assert message is not None and "\n" not in message and "[names] prefix" in message
    assert name_prefix.refusal("", kind, name, "x") is None  # control: the rule off


@pytest.mark.parametrize(("kind", "name", "instead"), [
    ("container", "/web", "ai-web"), ("image", "docker.io/library/postgres:16", "ai-postgres:16"),
    ("volume", "pgdata", "ai-pgdata"), ("compose project", "app", "ai-app"),
])
def test_the_refusal_names_the_spelling_to_use(kind: str, name: str, instead: str) -> None:
    with pytest.raises(Denied) as denied:
        name_prefix.check_name("ai-", kind, name, "what")
    assert denied.value.rule == name_prefix.RULE and f"use {instead!r}" in denied.value.message
    assert name_prefix.prefixed("ai-", kind, instead)


# ---------------------------------------------------------------- the policy key


@pytest.mark.names_default
def test_the_embedded_default_is_ai() -> None:
    assert DEFAULTS["names"]["prefix"] == name_prefix.DEFAULT_PREFIX == "ai-"
    assert load_policy(None).name_prefix == "ai-"


@pytest.mark.parametrize("value", ['"ai-"', '"agent."', '"x"', '""'])
def test_valid_prefixes(value: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f"[names]\nprefix = {value}\n")
    assert load_policy(str(path)).name_prefix == value.strip('"')


@pytest.mark.parametrize("value", ['"AI-"', '"-ai"', '"a b"', '"ai/"', '"gatekeeper-"', "1", '["ai-"]', '"' + "a" * 65 + '"'])
def test_invalid_prefixes_are_refused(value: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f"[names]\nprefix = {value}\n")
    with pytest.raises(PolicyError):
        load_policy(str(path))


# ---------------------------------------------------------------- the CLI layer

CLI_POLICY = """
[commands]
allowed = ["run", "create", "build", "network create", "compose run"]
[names]
prefix = "{prefix}"
"""


def cli_policy(tmp_path: Path, prefix: str = "ai-") -> Policy:
    path = tmp_path / f"policy{prefix}.toml"
    path.write_text(CLI_POLICY.format(prefix=prefix))
    return load_policy(str(path))


CLI_ALLOWED = {
    "run without a name": "docker run img",
    "run --name": "docker run --name ai-web img",
    "create --name=/": "docker create --name=/ai-job img",
    "new volume -v": "docker run -v ai-pgdata:/d img",
    "new volume --mount": "docker run --mount type=volume,src=ai-cache,dst=/c img",
    "anonymous volume": "docker run -v /d img",
    "build -t": "docker build -t ai-app:1 -",
    "build --tag= twice": "docker build --tag=ai-app:1 --tag ai-app:latest -",
    "build docker.io/library/": "docker build -t docker.io/library/ai-app -",
    "build without a tag": "docker build -",
    "build --output name=": "docker build --output type=image,name=ai-app:2 -",
    "network create": "docker network create ai-backend",
}

CLI_REFUSED = {
    "run --name": ("docker run --name web img", "'web'"),
    "run --name=": ("docker run -d --name=web img", "'web'"),
    "create --name /": ("docker create --name /web img", "'ai-web'"),
    "new volume -v": ("docker run -v pgdata:/d img", "'pgdata'"),
    "new volume --volume=": ("docker run --volume=pgdata:/d:ro img", "'pgdata'"),
    "new volume --mount": ("docker run --mount type=volume,source=pgdata,target=/d img", "'pgdata'"),
    "build -t": ("docker build -t postgres:16 -", "'ai-postgres:16'"),
    "build fully qualified": ("docker build -t docker.io/library/postgres:16 -", "'ai-postgres:16'"),
    "build second tag": ("docker build -t ai-app -t postgres -", "'postgres'"),
    "build --tag=": ("docker build --tag=postgres -", "'postgres'"),
    "image output": ("docker build --output type=image,name=postgres:16 -", "'postgres:16'"),
    "network create": ("docker network create backend", "'ai-backend'"),
}


@pytest.mark.parametrize("command", CLI_ALLOWED.values(), ids=CLI_ALLOWED.keys())
def test_cli_allows_prefixed_names(command: str, tmp_path: Path) -> None:
    decision = decide(command, cli_policy(tmp_path), Engine(FILES))
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(("command", "named"), CLI_REFUSED.values(), ids=CLI_REFUSED.keys())
def test_cli_refuses_names_without_the_prefix(command: str, named: str, tmp_path: Path) -> None:
    decision = decide(command, cli_policy(tmp_path), Engine(FILES))
    assert not decision.allowed and decision.rule == "name-prefix", decision.reason
    assert named in decision.reason and "\n" not in decision.reason
    control = decide(command, cli_policy(tmp_path, prefix=""), Engine(FILES))
    assert control.allowed, control.reason  # the prefix off: the same command runs


def test_the_cli_checks_exactly_the_naming_commands() -> None:
    assert NAMING == NAMES_NAMING


# compose: the vetted model compose is fed (its `name` is what -p, the file's `name:` or the
# directory made it; volumes and networks carry `<project>_<key>` unless the file names them).
def project(**parts: object) -> dict[str, object]:
    model: dict[str, object] = {"name": "ai-shop", "services": {"web": {"image": "nginx"}},
                                "networks": {"default": {"name": "ai-shop_default"}},
                                "volumes": {"data": {"name": "ai-shop_data"}}}
    model.update(parts)
    return model


COMPOSE_ALLOWED = {
    "prefixed project": project(),
    "pulled image": project(services={"db": {"image": "postgres:16"}}),
    "built image named": project(services={"web": {"image": "ai-shop-web:1", "build": {"context": "."}}}),
    "built image unnamed": project(services={"web": {"build": {"context": ".", "tags": ["ai-web:2"]}}}),
    "container_name": project(services={"web": {"image": "nginx", "container_name": "ai-web"}}),
    "external volume": project(volumes={"data": {"name": "pgdata", "external": True}}),
    "external network": project(networks={"edge": {"name": "edge", "external": True}}),
}

COMPOSE_REFUSED = {
    "project": (project(name="shop", networks={}, volumes={}), "compose project name 'shop'"),
    "volume name:": (project(volumes={"data": {"name": "pgdata"}}), "'pgdata'"),
    "network name:": (project(networks={"default": {"name": "backend"}}), "'backend'"),
    "built image": (project(services={"web": {"image": "postgres:16", "build": {"context": "."}}}), "'postgres:16'"),
    "build tag": (project(services={"web": {"build": {"context": ".", "tags": ["postgres:16"]}}}), "'postgres:16'"),
    "container_name": (project(services={"web": {"image": "nginx", "container_name": "web"}}), "'web'"),
}


@pytest.mark.parametrize("model", COMPOSE_ALLOWED.values(), ids=COMPOSE_ALLOWED.keys())
def test_compose_names_allowed(model: dict[str, object]) -> None:
    check_compose_names("ai-", model)


@pytest.mark.parametrize(("model", "named"), COMPOSE_REFUSED.values(), ids=COMPOSE_REFUSED.keys())
def test_compose_names_refused(model: dict[str, object], named: str) -> None:
    with pytest.raises(Denied) as denied:
        check_compose_names("ai-", model)
    assert denied.value.rule == "name-prefix" and named in denied.value.message


# ---------------------------------------------------------------- the API layer


def api_policy(prefix: str) -> Policy:
    return Policy(merge(DEFAULTS, {"names": {"prefix": prefix}}, "test"), "test", "")


API_ALLOWED = [
    ("POST", "/v1.47/containers/create", '{"Image":"alpine"}'),
    ("POST", "/v1.47/containers/create?name=ai-web", '{"Image":"alpine"}'),
    ("POST", "/v1.47/containers/create?name=0123456789ab_ai-shop-web-1", '{"Image":"alpine"}'),
    ("POST", "/v1.47/containers/create?name=ai-shop-web-1",
     '{"Image":"alpine","Labels":{"com.docker.compose.project":"ai-shop","com.docker.compose.service":"web"}}'),
    ("POST", "/v1.47/volumes/create", '{"Name":"ai-pgdata"}'),
    ("POST", "/v1.47/volumes/create", "{}"),
    ("POST", "/v1.47/volumes/create", '{"Name":"ai-shop_data","Labels":{"com.docker.compose.project":"ai-shop","com.docker.compose.volume":"data"}}'),
    ("POST", "/v1.47/networks/create", '{"Name":"ai-backend"}'),
    ("POST", "/v1.47/build?t=ai-app%3A1&t=ai-app%3Alatest", ""),
    ("POST", "/v1.47/build", ""),
]

API_REFUSED = [
    ("POST", "/v1.47/containers/create?name=web", '{"Image":"alpine"}', "'web'"),
    ("POST", "/v1.47/containers/create?name=0123456789ab_web", '{"Image":"alpine"}', "'0123456789ab_web'"),
    ("POST", "/v1.47/containers/create?name=ai-web",
     '{"Image":"alpine","Labels":{"com.docker.compose.project":"app","com.docker.compose.service":"web"}}', "'app'"),
    ("POST", "/v1.47/containers/create?name=ai-web", '{"Image":"alpine","HostConfig":{"Binds":["pgdata:/d"]}}', "'pgdata'"),
    ("POST", "/v1.47/volumes/create", '{"Name":"pgdata"}', "'ai-pgdata'"),
    ("POST", "/v1.47/volumes/create", '{"Name":"app_data","Labels":{"com.docker.compose.project":"app"}}', "'app_data'"),
    ("POST", "/v1.47/networks/create", '{"Name":"backend"}', "'ai-backend'"),
    ("POST", "/v1.47/build?t=postgres%3A16", "", "'ai-postgres:16'"),
    ("POST", "/v1.47/build?t=ai-app&t=postgres", "", "'postgres'"),
]


@pytest.mark.parametrize(("method", "target", "body"), API_ALLOWED)
def test_api_allows_prefixed_names(method: str, target: str, body: str) -> None:
    verdict = proxy_decide(method, target, body, "ai-")
    assert verdict.allowed, verdict.reason


@pytest.mark.parametrize(("method", "target", "body", "named"), API_REFUSED)
def test_api_refuses_names_without_the_prefix(method: str, target: str, body: str, named: str) -> None:
    verdict = proxy_decide(method, target, body, "ai-")
    assert not verdict.allowed and verdict.rule == "name-prefix", verdict.reason
    assert named in verdict.reason
    control = proxy_decide(method, target, body, "")
    assert control.allowed, control.reason  # the prefix off: the same request is forwarded


def proxy_decide(method: str, target: str, body: str, prefix: str):  # type: ignore[no-untyped-def]
    from gatekeeper.proxy.vet import vet_api_request

    return vet_api_request(request(method, target, body), api_policy(prefix), FakeEngine())


def test_the_api_checks_the_query_names_of_these_routes() -> None:
    assert set(proxy_names.QUERY_NAMES) == {"container.create", "container.rename", "image.build"}


# ---------------------------------------------------------------- names read as IDs (red team s5)

# The engine finds a container, network or image by full ID, then by name (an image: by tag),
# then by ID prefix: a name of hex digits only takes the operator's commands by short ID
# (`docker exec -it 3f2a1b4c5d6e sh`, `docker run <short image ID>`). Refused whatever the
# prefix, also with none; each beside the same name with one non-hex letter (allowed).
ID_LIKE_CLI = [
    ("docker run -d --name 3f2a1b4c5d6e img", "docker run -d --name 3f2a1b4c5d6g img"),
    ("docker create --name=/cafe img", "docker create --name=/cafes img"),
    ("docker network create abc123", "docker network create abc12x"),
    ("docker build -t abcdef123456 -", "docker build -t abcdef12345x -"),
    ("docker build -t docker.io/library/abcdef123456:latest -", "docker build -t docker.io/library/abcdef12345x:latest -"),
    ("docker build -t 0123abcd:v2 -", "docker build -t me/0123abcd:v2 -"),
]


@pytest.mark.parametrize(("command", "other"), ID_LIKE_CLI)
@pytest.mark.parametrize("prefix", ["", "a"])
def test_cli_refuses_names_read_as_ids(command: str, other: str, prefix: str, tmp_path: Path) -> None:
    decision = decide(command, cli_policy(tmp_path, prefix=prefix), Engine(FILES))
    assert not decision.allowed and decision.rule == "name-like-id", decision.reason
    control = decide(other, cli_policy(tmp_path, prefix=""), Engine(FILES))
    assert control.allowed, control.reason


def test_short_names_and_other_kinds_are_not_ids(tmp_path: Path) -> None:
    """`--name db` means a name (2 digits are not typed as an ID prefix); volumes and compose
    projects have no IDs."""
    for command in ("docker run --name db img", "docker run -v cafe:/d img"):
        decision = decide(command, cli_policy(tmp_path, prefix=""), Engine(FILES))
        assert decision.allowed, decision.reason
    check_compose_names("", {"name": "abc123", "volumes": {"d": {"name": "beef"}}, "services": {}})
    with pytest.raises(Denied) as refused:
        check_compose_names("", {"name": "shop", "services": {"web": {"container_name": "deadbeef"}}})
    assert refused.value.rule == "name-like-id"


ID_LIKE_API = [
    ("POST", "/v1.47/containers/create?name=3f2a1b4c5d6e", '{"Image":"alpine"}'),
    ("POST", "/v1.47/containers/create?name=0123456789ab_cafe", '{"Image":"alpine"}'),  # compose's stand-in
    ("POST", f"/v1.47/containers/{'a' * 64}/rename?name=3f2a1b4c5d6e", ""),
    ("POST", "/v1.47/networks/create", '{"Name":"abc123"}'),
    ("POST", "/v1.47/build?t=abcdef123456", ""),
]


@pytest.mark.parametrize(("method", "target", "body"), ID_LIKE_API)
@pytest.mark.parametrize("prefix", ["", "a"])
def test_api_refuses_names_read_as_ids(method: str, target: str, body: str, prefix: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = proxy_decide(method, target, body, prefix)
    assert not verdict.allowed and verdict.rule == "name-like-id", verdict.reason
    monkeypatch.setattr(name_prefix, "looks_like_id", lambda kind, name: False)
    control = proxy_decide(method, target, body, "")
    assert control.allowed, control.reason  # the rule off: forwarded
