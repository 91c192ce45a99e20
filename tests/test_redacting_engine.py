"""Inspect templates on redacted data (gatekeeper.redacting_engine), with the real docker CLI.

A stand-in engine (tests/fake_engine.py) holds the objects. The differential
tests run the pinned docker CLI twice for each real-world template:

* owned object: through gatekeeper's stand-in, and straight at the engine:
  the same bytes (stdout, stderr, exit status);
* foreign object: through the stand-in, and straight at an engine that holds
  the object already redacted ("redacted at the source"): the same bytes; and
  the control: straight at the real data, the secret shows.

Then the stand-in's routes (nothing but ping, info's swarm flag and single
objects), and the ForceCommand end to end with the real CLI.
"""

# ruff: noqa: E501

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.redacting_engine import go_json, redacting_engine, route
from gatekeeper.redaction import redact_tree
from tests.conftest import REPO
from tests.fake_engine import fake_engine

DOCKER = "/usr/bin/docker"
FIXTURE = Path(__file__).parent / "fixtures" / "redaction" / "inspect_containers.json"
KEYS = ("password", "secret", "token", "authconfig")
OWNER = "ci-bot"

pytestmark = pytest.mark.skipif(not Path(DOCKER).exists(), reason="the docker CLI is part of the test set-up")


def fixture_objects() -> dict[str, dict[str, object]]:
    operator_db, agent_web = json.loads(FIXTURE.read_text())
    operator_db["NetworkSettings"]["Networks"] = {"bridge": {"IPAddress": "172.17.0.5", "Gateway": "172.17.0.1"}}
    operator_db["State"]["Health"] = {"Status": "healthy", "FailingStreak": 0}
    operator_db["Config"]["Labels"]["html"] = "<a&b>"
    agent_web.update(copy.deepcopy({k: operator_db[k] for k in ("NetworkSettings", "Mounts", "Path", "Args")}))
    agent_web["Config"]["Labels"]["com.example.api-token"] = "mine-tok"
    volume = {"Name": "opsdata", "Driver": "local", "Mountpoint": "/var/lib/docker/volumes/opsdata/_data",
              "Labels": {"backup_password": "pw1", "gatekeeper.owner": "someone-else"}, "Options": {"o": "size=1g"}, "Scope": "local"}
    network = {"Name": "edge", "Id": "n1", "Driver": "bridge", "Labels": {"gatekeeper.owner": OWNER, "token": "net-tok"},
               "Containers": {"c1": {"Name": "agent-web", "IPv4Address": "172.18.0.2/16"}}, "Options": {}}
    return {"containers/operator-db": operator_db, "containers/agent-web": agent_web,
            "volumes/opsdata": volume, "networks/edge": network}


# Templates agents use (health checks, IPs, mounts, labels), in every inspect spelling.
TEMPLATES = [
    ("inspect", "-f", "{{json .}}"),
    ("inspect", "--format", "{{json .Config}}"),
    ("inspect", "-f", "{{.State.Status}}"),
    ("container", "inspect", "-f", "{{.State.Health.Status}}"),
    ("inspect", "--type", "container", "-f", "{{.NetworkSettings.IPAddress}}"),
    ("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}"),
    ("inspect", "-f", "{{json .NetworkSettings.Networks}}"),
    ("inspect", "-f", "{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}"),
    ("inspect", "-f", "{{len .Mounts}}"),
    ("inspect", "-f", "{{index .Config.Labels \"gatekeeper.owner\"}}"),
    ("inspect", "-f", "{{index .Config.Labels \"com.example.api-token\"}}"),
    ("inspect", "-f", "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}"),
    ("inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}"),
    ("inspect", "-f", "{{join .Config.Env \",\"}}"),
    ("inspect", "-f", "{{printf \"%s %v\" .Name .State.Running}}"),
    ("inspect", "-f", "{{upper .Name}} {{lower .Config.Image}} {{title .State.Status}}"),
    ("inspect", "-f", "{{.Config.Env}}"),
    ("inspect", "-f", "{{json .Config.Labels}}"),
    ("inspect", "-f", "{{split .Config.Image \":\"}}"),
    ("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}"),
    ("inspect", "-f", "{{.Extra}}"),  # not in docker's struct: the raw map fallback
    ("inspect", "-f", ""),  # empty template: docker's indented JSON
    ("inspect", "-s", "-f", "{{.Id}}"),
    ("inspect", "-f", "{{.NoSuchField}}"),
]


def docker(host: str, home: Path, *args: str) -> tuple[int, bytes, bytes]:
    env = {"DOCKER_HOST": host, "HOME": str(home), "DOCKER_CONFIG": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    done = subprocess.run([DOCKER, *args], env=env, capture_output=True, timeout=30, check=False)
    return done.returncode, done.stdout, done.stderr


class Policy:
    def __init__(self, host: str) -> None:
        self.host = host
        self.profile = OWNER
        self.redact_keys = tuple(key.lower() for key in KEYS)
        self.scope: dict[str, str] = {}

    def scope_of(self, key: str) -> str:
        return self.scope.get(key, "all")


def redacted_at_source(objects: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """What the engine would hold had every object the agent does not own been redacted."""
    from gatekeeper.redaction import owned_by

    return {key: value if owned_by(value, OWNER) else redact_tree(value, KEYS) for key, value in objects.items()}


@pytest.fixture
def engines(tmp_path: Path):  # type: ignore[no-untyped-def]
    raw_dir, clean_dir = tmp_path / "raw", tmp_path / "clean"
    raw_dir.mkdir()
    clean_dir.mkdir()
    objects = fixture_objects()
    with (fake_engine(raw_dir, objects) as raw, fake_engine(clean_dir, redacted_at_source(objects)) as clean,
          redacting_engine(Policy(f"unix://{raw.server_address}")) as ours):
        yield {"raw": f"unix://{raw.server_address}", "clean": f"unix://{clean.server_address}", "ours": ours,
               "home": tmp_path, "engine": raw}


@pytest.mark.parametrize("template", TEMPLATES, ids=[" ".join(t) for t in TEMPLATES])
def test_owned_object_prints_what_docker_prints(engines, template: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    words = [*template, "agent-web"]
    expected = docker(engines["raw"], engines["home"], *words)
    assert docker(engines["ours"], engines["home"], *words) == expected


def test_owned_object_keeps_its_own_values(engines) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = docker(engines["ours"], engines["home"], "inspect", "-f", "{{.Config.Env}}", "agent-web")
    assert out == b"[APP_SECRET=mine PATH=/usr/bin]\n"


@pytest.mark.parametrize("template", TEMPLATES, ids=[" ".join(t) for t in TEMPLATES])
def test_foreign_object_prints_what_docker_prints_on_redacted_data(engines, template: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    words = [*template, "operator-db"]
    expected = docker(engines["clean"], engines["home"], *words)
    shown = docker(engines["ours"], engines["home"], *words)
    assert shown == expected
    for secret in (b"hunter2", b"tok-123", b"postgres://"):
        assert secret not in shown[1]


def test_control_without_the_stand_in_the_template_prints_the_secret(engines) -> None:  # type: ignore[no-untyped-def]
    template = ("inspect", "-f", "{{.Config.Env}} {{index .Config.Labels \"com.example.api-token\"}}", "operator-db")
    attack = docker(engines["raw"], engines["home"], *template)
    assert b"hunter2" in attack[1] and b"tok-123" in attack[1]  # the defence off: the values show
    defended = docker(engines["ours"], engines["home"], *template)
    assert defended[0] == 0
    assert b"hunter2" not in defended[1] and b"tok-123" not in defended[1]
    assert b"POSTGRES_PASSWORD=***" in defended[1]


@pytest.mark.parametrize("words", [
    ("inspect", "-f", "{{.Name}}", "agent-web", "operator-db", "missing"),  # several, one missing: docker's error, status 1
    ("inspect", "-f", "{{.Name}}", "missing"),
    ("container", "inspect", "-f", "{{.Name}}", "missing"),
    ("volume", "inspect", "-f", "{{.Labels}} {{.Options}}", "opsdata"),
    ("inspect", "--type", "volume", "-f", "{{json .}}", "opsdata"),
    ("inspect", "-f", "{{.Mountpoint}} {{.Labels}}", "opsdata"),  # untyped: found after containers and images
    ("network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}} {{.Labels}}", "edge"),
    ("inspect", "--type", "network", "-f", "{{json .Labels}}", "edge"),
], ids=" ".join)
def test_other_kinds_and_errors_as_docker_prints_them(engines, words: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    assert docker(engines["ours"], engines["home"], *words) == docker(engines["clean"], engines["home"], *words)


def test_foreign_volume_labels_redacted_and_owned_network_not(engines) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = docker(engines["ours"], engines["home"], "volume", "inspect", "-f", "{{json .Labels}}", "opsdata")
    assert json.loads(out) == {"backup_password": "***", "gatekeeper.owner": "someone-else"}
    _, out, _ = docker(engines["ours"], engines["home"], "network", "inspect", "-f", "{{json .Labels}}", "edge")
    assert json.loads(out)["token"] == "net-tok"  # the agent's own network


# ---------------------------------------------------------------- routes


@pytest.mark.parametrize(("path", "kind"), [
    ("/_ping", "ping"),
    ("/v1.41/_ping", "ping"),
    ("/v1.50/info", "info"),
    ("/v1.41/containers/web/json", "object"),
    ("/v1.41/containers/web/json?size=1", "object"),
    ("/v1.41/images/registry.example:5000/team/app:1.2/json", "object"),
    ("/v1.41/networks/edge?verbose=false", "object"),
    ("/v1.41/volumes/data", "object"),
    ("/v1.41/plugins/vieux/sshfs:latest/json", "object"),
    ("/v1.41/services/api?insertDefaults=true", "object"),
    # the lists a listing's template runs on (ps, images, volume ls, network ls --format)
    ("/v1.41/containers/json", "list"),
    ("/v1.41/containers/json?all=1&filters=%7B%7D", "list"),
    ("/v1.41/images/json", "list"),
    ("/v1.41/networks", "list"),
    ("/v1.41/networks/", "list"),
    ("/v1.41/volumes", "list"),
    # trying to cheat: anything an inspect or a listing does not need
    ("/v1.41/containers/web/logs", None),
    ("/v1.41/containers/web/exec", None),
    ("/v1.41/containers/web/archive?path=/etc", None),
    ("/v1.41/images/../containers/web/json", None),
    ("/v1.41/images/x/../../containers/json", None),
    ("/v1.41/images/%2e%2e/containers/web/json", None),
    ("/v1.41/images/x/../../volumes", None),
    ("/v1.41/version", "ping"),  # compose images asks it
    ("/v1.41/events", None),
    ("/v1.41/system/df", "list"),  # the disk usage lists every object (redacted)
    ("/v1.41/system/dfx", None),
    ("/session", None),
    ("/grpc", None),
    ("/v1.41/containers/web/json/x", None),
], ids=str)
def test_routes(path: str, kind: str | None) -> None:
    assert route(path) == kind


def raw_request(socket_path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("request_line", [
    b"GET /v1.41/containers/agent-web/logs HTTP/1.1",
    b"POST /v1.41/containers/agent-web/json HTTP/1.1",
    b"DELETE /v1.41/containers/agent-web HTTP/1.1",
    b"HEAD /v1.41/containers/agent-web/json HTTP/1.1",
])
def test_the_stand_in_answers_nothing_else(engines, request_line: bytes) -> None:  # type: ignore[no-untyped-def]
    """Control: the engine itself answers the listing; the stand-in gives 404 or 501 to what
    an inspect or a listing does not need, and never asks it."""
    listing = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    engines["engine"].objects["containers"] = [{"Id": "x", "Labels": {"token": "leak"}}]
    assert raw_request(engines["raw"][len("unix://"):], listing).startswith(b"HTTP/1.1 200")
    asked = len(engines["engine"].requests)
    reply = raw_request(engines["ours"][len("unix://"):], request_line + b"\r\nHost: docker\r\nConnection: close\r\n\r\n")
    assert reply.split(b" ", 2)[1] in (b"404", b"501")
    assert b"leak" not in reply
    assert len(engines["engine"].requests) == asked


LISTED = {
    "containers": [
        {"Id": "c" * 64, "Names": ["/operator-db"], "Image": "postgres", "State": "running",
         "Labels": {"backup.password": "pw-listed", "team": "ops"}},
        {"Id": "d" * 64, "Names": ["/agent-web"], "Image": "web", "State": "running",
         "Labels": {"gatekeeper.owner": OWNER, "gatekeeper.created": OWNER, "api_token": "mine-listed"}},
    ],
    "volumes": {"Volumes": [{"Name": "opsdata", "Driver": "local", "Labels": {"backup_password": "pw-vol"}}],
                "Warnings": None},
    "networks": [{"Name": "edge", "Id": "n1", "Driver": "bridge", "Labels": {"edge.token": "tok-net"}}],
}
# GET /system/df: the same containers and volumes in one answer (`docker system df -v`).
LISTED["system/df"] = {"LayersSize": 0, "Images": [], "BuildCache": [],
                       "Containers": copy.deepcopy(LISTED["containers"]),
                       "Volumes": copy.deepcopy(LISTED["volumes"]["Volumes"])}  # type: ignore[index]


@pytest.mark.parametrize(("words", "secret"), [
    (("ps", "--format", "{{.Labels}}"), b"pw-listed"),
    (("container", "ls", "--format", "{{json .}}"), b"pw-listed"),
    (("ps", "--format", '{{.Label "backup.password"}}'), b"pw-listed"),
    (("volume", "ls", "--format", "{{.Name}} {{.Labels}}"), b"pw-vol"),
    (("network", "ls", "--format", "{{json .Labels}}"), b"tok-net"),
    (("system", "df", "-v", "--format", "{{json .}}"), b"pw-listed"),
    (("system", "df", "-v", "--format", "{{json .}}"), b"pw-vol"),
], ids=str)
def test_listing_templates_print_foreign_labels_redacted(engines, words: tuple[str, ...], secret: bytes) -> None:  # type: ignore[no-untyped-def]
    """Control: straight at the engine the label value shows; through the stand-in it is hidden,
    and the agent's own container keeps its values."""
    engines["engine"].objects.update(copy.deepcopy(LISTED))
    code, raw, _ = docker(engines["raw"], engines["home"], *words)
    assert code == 0 and secret in raw
    code, shown, err = docker(engines["ours"], engines["home"], *words)
    assert code == 0, err
    assert secret not in shown and b"***" in shown
    if words[0] in ("ps", "container", "system") and ".Label " not in words[-1]:
        assert b"mine-listed" in shown


@pytest.mark.parametrize("words", [
    ("ps", "-a", "--format", "{{.Names}}"),
    ("system", "df", "-v"),
    ("system", "df", "-v", "--format", "{{json .}}"),
], ids=str)
def test_owned_scope_leaves_out_the_containers_not_owned(tmp_path: Path, words: tuple[str, ...]) -> None:
    """[scope] ps = "owned": the stand-in's lists hold only the agent's containers (compose ls,
    compose ps and system df -v read them there). Control: the same stand-in with ps = "all"."""
    objects: dict[str, object] = copy.deepcopy(LISTED)  # type: ignore[arg-type]
    with fake_engine(tmp_path, objects) as raw:  # type: ignore[arg-type]
        shown = {}
        for scope in ("all", "owned"):
            policy = Policy(f"unix://{raw.server_address}")
            policy.scope["ps"] = scope
            with redacting_engine(policy) as ours:  # type: ignore[arg-type]
                code, out, err = docker(ours, tmp_path, *words)
            assert code == 0, err
            shown[scope] = out
    assert b"operator-db" in shown["all"] and b"agent-web" in shown["all"]
    assert b"operator-db" not in shown["owned"] and b"agent-web" in shown["owned"]


def test_owned_lists_follow_the_scope() -> None:
    from gatekeeper.redaction import owned_lists

    policy = Policy("unix:///none")
    assert owned_lists(policy) == frozenset()  # type: ignore[arg-type]
    policy.scope.update(ps="owned", images="owned")
    assert owned_lists(policy) == {"containers", "images"}  # type: ignore[arg-type]


def test_info_reduced_to_the_swarm_flag(engines) -> None:  # type: ignore[no-untyped-def]
    reply = raw_request(engines["ours"][len("unix://"):], b"GET /v1.41/info HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
    assert reply.split(b"\r\n\r\n", 1)[1] == b'{"Swarm":{"ControlAvailable":false}}\n'


def test_socket_directory_is_private_and_removed(tmp_path: Path) -> None:
    with redacting_engine(Policy(f"unix://{tmp_path}/none.sock")) as host:
        directory = Path(host[len("unix://"):]).parent
        assert directory.stat().st_mode & 0o777 == 0o700
        assert directory.parent == Path("/tmp")
    assert not directory.exists()


def test_go_json_escapes_like_go() -> None:
    assert go_json({"a": "<x>&\u2028é"}) == b'{"a":"\\u003cx\\u003e\\u0026\\u2028\xc3\xa9"}\n'


def test_unreachable_engine_is_an_error_not_data(tmp_path: Path) -> None:
    with redacting_engine(Policy(f"unix://{tmp_path}/none.sock")) as host:
        code, out, _ = docker(host, tmp_path, "inspect", "-f", "{{.Name}}", "web")
    assert code != 0 and out.strip() == b""


# ---------------------------------------------------------------- ForceCommand


def test_forcecommand_runs_templates_against_the_stand_in(tmp_path: Path) -> None:
    objects = fixture_objects()
    home = tmp_path / "home"
    home.mkdir()
    audit = tmp_path / "audit.jsonl"
    audit.touch()
    with fake_engine(tmp_path, objects) as engine:
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[docker]\nbinary = "{DOCKER}"\nworkdir = "{home}"\nconfig_dir = "{tmp_path}"\n'
                          f'host = "unix://{engine.server_address}"\n[audit]\npath = "{audit}"\nsyslog = false\n'
                          f'[paths]\nallowed_roots = ["{home}"]\n')
        command = "docker inspect -f '{{.Name}} {{json .Config.Env}}' agent-web operator-db"
        env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": command}
        done = subprocess.run([sys.executable, "-I", "-m", "gatekeeper", "--policy", str(policy), "--name", OWNER],
                              env=env, cwd=REPO, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        '/agent-web ["APP_SECRET=mine","PATH=/usr/bin"]',
        '/operator-db ["POSTGRES_PASSWORD=***","DATABASE_URL=***","EMPTY=***","PASSED_THROUGH","PATH=***"]',
    ]
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["event"], r.get("exit")) for r in records] == [("decision", None), ("exit", 0)]
