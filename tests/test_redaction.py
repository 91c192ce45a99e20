"""Secret redaction: docker inspect and compose config output, after docker printed
it and before the agent sees it.

* the pure filters on a captured, real-looking inspect document (nested keys,
  lists, labels, an object the agent owns beside one it does not);
* the decisions that choose a filter, and the "trying to cheat" list: a Go
  template (--format) runs inside docker, before any redaction;
* ForceCommand end to end with a stub docker that prints the document: the
  agent sees *** and docker's exit status; unparsable output is withheld; a
  large output does not stall the pipe.
"""

# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.decision import decide
from gatekeeper.policy import load_policy
from gatekeeper.redaction import redact_compose_config, redact_inspect
from tests.conftest import REPO, Deployment, gatekeeper_command
from tests.fakes import StaticWorld

FIXTURE = Path(__file__).parent / "fixtures" / "redaction" / "inspect_containers.json"
KEYS = tuple(load_policy(None).settings["redact"]["keys"])  # type: ignore[arg-type]


def redacted(owner: str = "ci-bot") -> list[dict]:
    return json.loads(redact_inspect(FIXTURE.read_bytes(), owner, KEYS))


def test_foreign_container_env_values_hidden_names_kept() -> None:
    env = redacted()[0]["Config"]["Env"]
    assert env == ["POSTGRES_PASSWORD=***", "DATABASE_URL=***", "EMPTY=***", "PASSED_THROUGH", "PATH=***"]


def test_foreign_container_keys_hidden_anywhere_in_the_tree() -> None:
    db = redacted()[0]
    nested = db["Extra"]["Nested"]
    assert nested[0]["AuthConfig"] == {"Username": "***", "Password": "***"}  # the whole value under a matching key
    assert nested[1] == {"ClientSecret": "***", "Keep": "visible"}
    assert db["Config"]["Labels"]["com.example.api-token"] == "***"


def test_foreign_container_keeps_what_is_not_secret() -> None:
    db = redacted()[0]
    original = json.loads(FIXTURE.read_text())[0]
    for key in ("Id", "Name", "State", "HostConfig", "Mounts", "NetworkSettings", "Args"):
        assert db[key] == original[key]
    assert db["Config"]["Labels"]["gatekeeper.owner"] == "someone-else"
    assert db["Config"]["Image"] == "postgres:16"


def test_owned_container_printed_as_is() -> None:
    assert redacted("ci-bot")[1] == json.loads(FIXTURE.read_text())[1]


def test_owner_is_compared_exactly() -> None:
    """ci-bo, ci-bot2 and an absent label own nothing."""
    for owner in ("ci-bo", "ci-bot2", "default", ""):
        assert redacted(owner)[1]["Config"]["Env"] == ["APP_SECRET=***", "PATH=***"]


def test_image_env_redacted_too() -> None:
    image = [{"Id": "sha256:1", "RepoTags": ["app:1"], "Author": "me",
              "Config": {"Env": ["API_KEY=abc"], "Labels": None},
              "ContainerConfig": {"Env": ["API_KEY=abc"]}}]
    shown = json.loads(redact_inspect(json.dumps(image).encode(), "ci-bot", KEYS))[0]
    assert shown["Config"]["Env"] == ["API_KEY=***"]
    assert shown["ContainerConfig"]["Env"] == ["API_KEY=***"]
    assert shown["Author"] == "me"


def test_empty_output_passes_and_garbage_is_refused() -> None:
    assert redact_inspect(b"", "x", KEYS) == b""
    for garbage in (b"{not json", b'{"Config": {}}', b"\xff\xfe"):
        with pytest.raises(ValueError):
            redact_inspect(garbage, "x", KEYS)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=20))
def test_redaction_never_crashes_and_hides_env(tree: object) -> None:
    document = [{"Config": {"Env": ["SECRET=value"]}, "Extra": tree}]
    shown = json.loads(redact_inspect(json.dumps(document).encode(), "x", KEYS))
    assert shown[0]["Config"]["Env"] == ["SECRET=***"]


def test_compose_config_environment_build_args_and_contents_hidden() -> None:
    project = {
        "name": "app",
        "services": {"web": {"image": "x", "environment": {"DB_PASSWORD": "p", "UNSET": None},
                             "build": {"context": "/w", "args": {"NPM_TOKEN": "t"}}}},
        "secrets": {"s": {"content": "top secret", "name": "app_s"}},
        "configs": {"c": {"content": "inline", "name": "app_c"}},
    }
    shown = json.loads(redact_compose_config(json.dumps(project).encode(), KEYS))
    assert shown["services"]["web"]["environment"] == {"DB_PASSWORD": "***", "UNSET": None}
    assert shown["services"]["web"]["build"]["args"] == {"NPM_TOKEN": "***"}
    assert shown["secrets"]["s"]["content"] == "***"
    assert shown["configs"]["c"]["content"] == "***"
    assert shown["services"]["web"]["image"] == "x"


# ---------------------------------------------------------------- decisions

# (command, expected decision, rule or filter)
DECISIONS = [
    ("docker inspect web", "allow", "redact-inspect"),
    ("docker inspect --type image nginx", "allow", "redact-inspect"),
    ("docker inspect -s web db", "allow", "redact-inspect"),
    ("docker container inspect web", "allow", "redact-inspect"),
    ("docker image inspect nginx", "allow", "redact-inspect"),
    ("docker ps -a", "allow", None),
    ("docker network inspect bridge", "allow", "redact-inspect"),
    ("docker volume inspect data", "allow", "redact-inspect"),
    # templates: docker formats objects that reach it already redacted
    ("docker inspect --format '{{.Config.Env}}' operator-db", "allow", "redact-at-source"),
    ("docker inspect -f '{{json .}}' operator-db", "allow", "redact-at-source"),
    ("docker inspect -f='{{range .Config.Env}}{{.}}{{end}}' db", "allow", "redact-at-source"),
    ("docker inspect --format='{{.Config.Env}}' db", "allow", "redact-at-source"),
    ("docker inspect -sf '{{.Config.Env}}' db", "allow", "redact-at-source"),
    ("docker inspect --type volume -f '{{.Options}}' db", "allow", "redact-at-source"),
    ("docker container inspect --format '{{.Config.Env}}' db", "allow", "redact-at-source"),
    ("docker image inspect -f '{{.Config.Env}}' postgres", "allow", "redact-at-source"),
    ("docker network inspect -f '{{.Options}}' edge", "allow", "redact-at-source"),
    ("docker volume inspect --format '{{.Options}}' data", "allow", "redact-at-source"),
    # listings: a template prints every listed object's labels; without one none show
    ("docker ps --format '{{.Labels}}'", "allow", "redact-at-source"),
    ("docker ps -a --format='{{json .}}'", "allow", "redact-at-source"),
    ("docker container ls --format json", "allow", "redact-at-source"),
    ("docker images --format '{{json .}}'", "allow", "redact-at-source"),
    ("docker volume ls --format '{{.Name}} {{.Labels}}'", "allow", "redact-at-source"),
    ("docker network ls --format '{{json .Labels}}'", "allow", "redact-at-source"),
    ("docker ps --format '{{.}}'", "allow", "redact-at-source"),  # the whole struct, labels too
    ("docker ps --format '{{.Names}} {{.Label \"team\"}}'", "allow", "redact-at-source"),
    ("docker ps --format '{{- .Names}}'", "allow", "redact-at-source"),  # not plain: redacted anyway
    ("docker ps --format '{{.Names}}{{'", "allow", "redact-at-source"),
    ("docker ps -a --format '{{.Names}}'", "allow", None),  # plain fields print no labels
    ("docker ps --format 'table {{.ID}}\\t{{.Image}}\\t{{ .Status }}'", "allow", None),
    ("docker images --format '{{.Repository}}:{{.Tag}}'", "allow", None),
    ("docker volume ls --format '{{.Name}}'", "allow", None),
    ("docker images", "allow", None),
    ("docker volume ls -q", "allow", None),
    ("docker network ls", "allow", None),
    # system df -v: a template runs on every image, container and volume, labels too
    ("docker system df -v --format '{{json .}}'", "allow", "redact-at-source"),
    ("docker system df --verbose --format='{{range .Containers}}{{.Labels}}{{end}}'", "allow",
     "redact-at-source"),
    ("docker system df --format '{{.Type}}'", "allow", "redact-at-source"),  # any template: no plain list
    ("docker system df -v", "allow", None),  # the tables show no labels
    ("docker system df", "allow", None),
]


@pytest.mark.parametrize(("command", "expected", "what"), DECISIONS, ids=[c for c, _, _ in DECISIONS])
def test_inspect_decisions(command: str, expected: str, what: str | None) -> None:
    decision = decide(command, load_policy(None), StaticWorld())
    assert decision.as_dict()["decision"] == expected, decision.reason
    assert decision.output_filter == what
    assert decision.argv == shlex.split(command)  # the command itself is not changed


@pytest.mark.parametrize("host", ["tcp://127.0.0.1:2375", "ssh://root@db"])
def test_a_template_needs_an_engine_gatekeeper_can_stand_in_front_of(host: str, tmp_path: Path) -> None:
    """The stand-in speaks to unix:// engines only; elsewhere a template would run on raw data."""
    command = "docker inspect -f '{{.Config.Env}}' db"
    assert decide(command, load_policy(None), StaticWorld()).allowed  # control: the default engine
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f'[docker]\nhost = "{host}"\n')
    decision = decide(command, load_policy(str(policy_file)), StaticWorld())
    assert (decision.allowed, decision.rule) == (False, "inspect-format")
    assert "without the template" in decision.reason
    assert decide("docker inspect db", load_policy(str(policy_file)), StaticWorld()).allowed
    listing = decide("docker volume ls --format '{{.Labels}}'", load_policy(str(policy_file)), StaticWorld())
    assert (listing.allowed, listing.rule) == (False, "inspect-format")
    assert decide("docker volume ls", load_policy(str(policy_file)), StaticWorld()).allowed


# ---------------------------------------------------------------- ForceCommand


def stub_printing(deployment: Deployment, path: Path, exit_code: int = 0) -> None:
    deployment.docker.write_text(f"#!/bin/sh\ncat '{path}'\nexit {exit_code}\n")


def run_gatekeeper(deployment: Deployment, command: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": command}
    return subprocess.run([*gatekeeper_command(), "--policy", str(deployment.policy), *extra],
                          env=env, cwd=REPO, capture_output=True, timeout=30, check=False)


def test_forcecommand_redacts_inspect_output(deployment: Deployment) -> None:
    stub_printing(deployment, FIXTURE, exit_code=1)  # as when one of several names is not found
    result = run_gatekeeper(deployment, "docker inspect operator-db agent-web", "--name", "ci-bot")
    assert result.returncode == 1  # docker's status, kept
    shown = json.loads(result.stdout)
    assert shown[0]["Config"]["Env"][0] == "POSTGRES_PASSWORD=***"
    assert shown[1]["Config"]["Env"][0] == "APP_SECRET=mine"  # ci-bot's own
    assert b"hunter2" not in result.stdout
    records = [json.loads(line) for line in deployment.audit_lines()]
    assert [r["event"] for r in records] == ["decision", "exit"]
    assert records[1]["exit"] == 1


def test_forcecommand_without_name_owns_nothing_labelled_otherwise(deployment: Deployment) -> None:
    stub_printing(deployment, FIXTURE)
    result = run_gatekeeper(deployment, "docker container inspect agent-web")
    assert result.returncode == 0
    assert b"mine" not in result.stdout and b"hunter2" not in result.stdout


def test_forcecommand_withholds_output_it_cannot_parse(deployment: Deployment, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b'POSTGRES_PASSWORD=hunter2\n')
    stub_printing(deployment, garbage)
    result = run_gatekeeper(deployment, "docker inspect operator-db")
    assert result.stdout == b""
    assert b"output withheld" in result.stderr
    assert result.returncode == 1  # never 0 for output we did not show


def test_forcecommand_large_output_does_not_stall(deployment: Deployment, tmp_path: Path) -> None:
    """More than a pipe buffer (64 KiB): the supervisor reads while docker writes."""
    big = tmp_path / "big.json"
    objects = [{"Id": str(i), "Config": {"Env": [f"K{i}=v{i}" * 20]}} for i in range(5000)]
    big.write_text(json.dumps(objects))
    assert big.stat().st_size > 1 << 20
    stub_printing(deployment, big)
    result = run_gatekeeper(deployment, "docker inspect x")
    assert result.returncode == 0
    shown = json.loads(result.stdout)
    assert len(shown) == 5000
    assert shown[4999]["Config"]["Env"] == ["K4999=***"]


def test_unfiltered_commands_keep_direct_stdout(deployment: Deployment, tmp_path: Path) -> None:
    text = tmp_path / "ps.txt"
    text.write_bytes(b"not json at all\n")
    stub_printing(deployment, text)
    result = run_gatekeeper(deployment, "docker ps")
    assert result.returncode == 0
    assert result.stdout == b"not json at all\n"


def test_forcecommand_withholds_output_nested_too_deeply(deployment: Deployment, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" + '{"a":' * 100000 + "1" + "}" * 100000 + "]")
    stub_printing(deployment, deep)
    result = run_gatekeeper(deployment, "docker inspect x")
    assert result.stdout == b""
    assert b"output withheld" in result.stderr
    assert result.returncode == 1


def test_driver_option_pairs_naming_a_secret_are_hidden() -> None:
    """The local driver's cifs/nfs volume: `o=username=u,password=...` (red team s5). Control:
    the same volume owned by the agent is shown as it is."""
    volume = {"Name": "share", "Driver": "local", "Labels": {},
              "Options": {"type": "cifs", "device": "//10.0.0.5/share", "o": "username=ops,password=hunter2,vers=3.0",
                          "secret": "x", "other": "a=b,c"}}
    document = json.dumps([volume]).encode()
    shown = json.loads(redact_inspect(document, "ci-bot", KEYS))[0]["Options"]
    assert shown == {"type": "cifs", "device": "//10.0.0.5/share", "o": "username=ops,password=***,vers=3.0",
                     "secret": "***", "other": "a=b,c"}
    owned = dict(volume, Labels={"gatekeeper.owner": "ci-bot"})
    assert json.loads(redact_inspect(json.dumps([owned]).encode(), "ci-bot", KEYS))[0] == owned


OWNED_SCOPE = [
    ("docker compose ls", "redact-at-source"),
    ("docker compose ls -a --format json", "redact-at-source"),
    ("docker system df -v", "redact-at-source"),
    ("docker system df", "redact-at-source"),
    ("docker ps -a", None),  # its own owner filters on the argv
    ("docker version", None),
]


@pytest.mark.parametrize(("command", "what"), OWNED_SCOPE, ids=[c for c, _ in OWNED_SCOPE])
@pytest.mark.parametrize("scope", ["ps", "images"])
def test_owned_scope_lists_from_the_stand_in(command: str, what: str | None, scope: str, tmp_path: Path) -> None:
    """[scope] ps/images = "owned": compose ls and system df list from the stand-in, which leaves
    out what the agent does not own (gatekeeper.redacting_engine); control: the default ("all")."""
    default = decide(command, load_policy(None), StaticWorld())
    assert default.allowed and default.output_filter is None
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f'[scope]\n{scope} = "owned"\n')
    decision = decide(command, load_policy(str(policy_file)), StaticWorld())
    assert decision.allowed, decision.reason
    assert decision.output_filter == what
