"""Inspect templates through the real ssh, sshd and engine: a differential test.

For the agent's own objects (a container with a health check, env, labels, a
named volume and a network of its own; an image it built; the volume and
network), every real-world template in every inspect spelling prints through
gatekeeper exactly what root's docker prints straight at the engine: stdout,
stderr and exit status, byte for byte. For root's objects the same templates
print the redacted data: environment values `***`, secret-looking labels `***`,
and root's own template (the control) shows the values.

Layouts: the redaction of root's objects (the leak) runs three ways (tests/e2e/stack.py
MODES: in layout (b) the proxy redacts the inspect answer the unvetted docker CLI formats);
the differential half is everyday work and runs in the default layout.
"""

# Templates are long; each reads best on one line.
# ruff: noqa: E501

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT, IMAGE, MODES, Stack, write_file

pytestmark = pytest.mark.e2e

NAME = "gk-e2e-tpl"
OURS = "ai-e2e-tpl"  # the agent's objects, named within the [names] prefix
OWNER = ("--label", "gatekeeper.owner=default", "--label", "gatekeeper.created=default")
SECRET = "tpl-secret-value-4711"
CONTEXT = Path("/home/ai-worker/work/tpl-build")

# What agents type: health checks, IPs, mounts, labels, whole documents.
CONTAINER_TEMPLATES = [
    "{{.State.Status}}",
    "{{.State.Health.Status}}",
    "{{.NetworkSettings.IPAddress}}",
    "{{json .}}",
    "{{json .Config}}",
    "{{json .NetworkSettings.Networks}}",
    "{{range $net, $cfg := .NetworkSettings.Networks}}{{$net}} {{$cfg.IPAddress}}{{end}}",
    "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{println}}{{end}}",
    "{{len .Mounts}}",
    "{{range .Config.Env}}{{println .}}{{end}}",
    "{{join .Config.Env \",\"}}",
    '{{index .Config.Labels "app"}}',
    "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
    '{{printf "%s is %s" .Name .State.Status}}',
    "{{upper .State.Status}} {{lower .Name}}",
    "{{.HostConfig.RestartPolicy.Name}} {{.RestartCount}}",
    "{{.Config.Image}} {{.Image}}",
    "{{with .State.Health}}{{.Status}}{{else}}none{{end}}",
    "{{.Config.Cmd}} {{.Path}} {{.Args}}",
    "",
]
CONTAINER_SPELLINGS = ["inspect", "container inspect", "inspect --type container", "inspect -s"]
OTHER_CASES = [
    ("image inspect", "img", "{{.Config.Env}} {{json .Config.Labels}}"),
    ("inspect --type image", "img", "{{.Os}}/{{.Architecture}} {{index .Config.Labels \"app\"}}"),
    ("image inspect", "img", "{{json .RepoTags}}"),
    ("volume inspect", "data", "{{.Name}} {{.Driver}} {{json .Labels}}"),
    ("inspect --type volume", "data", "{{.Mountpoint}}"),
    ("inspect", "data", "{{.Name}} {{.Scope}}"),  # untyped: found after container and image lookups
    ("network inspect", "net", "{{.Name}} {{.Driver}} {{range .Containers}}{{.Name}}{{end}}"),
    ("inspect --type network", "net", "{{json .Labels}} {{.Internal}}"),
    ("inspect", "web", "{{.Name}}"),
]


def quoted(template: str) -> str:
    return "''" if not template else f"'{template}'"


@pytest.fixture(scope="module")
def objects(stack: Stack) -> Iterator[dict[str, str]]:
    """The agent's container, volume, network and image, and root's container. The health
    check's first run is an hour away: the state stays `starting` between the two calls
    compared (a health log written in between would differ for a reason of its own)."""
    names = {"web": f"{OURS}-web", "data": f"{OURS}-data", "net": f"{OURS}-net", "img": f"{OURS}-img:1",
             "foreign": f"{NAME}-root"}
    cleanup(stack, names)
    stack.docker("volume", "create", *OWNER, names["data"])
    stack.docker("network", "create", *OWNER, names["net"])
    stack.docker("run", "-d", "--name", names["web"], *OWNER, "--label", "app=web", "-e", "APP_TOKEN=mine",
                 "-v", f"{names['data']}:/data", "--network", names["net"], "--restart", "unless-stopped",
                 "--health-cmd", "true", "--health-interval", "1h", IMAGE, "sleep", "600")
    stack.docker("run", "-d", "--name", names["foreign"], "-e", f"DB_PASSWORD={SECRET}",
                 "--label", f"com.example.api-token={SECRET}", "--label", "app=root", IMAGE, "sleep", "600")
    write_file(CONTEXT / "Dockerfile", f"FROM {IMAGE}\nENV APP_MODE=tpl\nLABEL app=img\n",
               mode=0o644, owner=AGENT, group=AGENT)
    built = stack.ssh(f"docker build -q -t {names['img']} {CONTEXT}", timeout=180)
    assert built.returncode == 0, built.stderr
    yield names
    cleanup(stack, names)


def cleanup(stack: Stack, names: dict[str, str]) -> None:
    stack.docker("rm", "-f", names["web"], names["foreign"], check=False)
    stack.docker("volume", "rm", names["data"], check=False)
    stack.docker("network", "rm", names["net"], check=False)
    stack.docker("rmi", names["img"], check=False)
    for path in (CONTEXT / "Dockerfile", CONTEXT):
        if path.is_file():
            path.unlink()
        elif path.is_dir():
            path.rmdir()


def same_as_root(stack: Stack, spelling: str, template: str, target: str) -> None:
    ours = stack.ssh(f"docker {spelling} --format {quoted(template)} {target}")
    theirs = stack.docker(*spelling.split(), "--format", template, target, check=False)
    assert (ours.returncode, ours.stdout.decode(), ours.stderr.decode()) == (
        theirs.returncode, theirs.stdout, theirs.stderr)
    assert ours.returncode == 0


@pytest.mark.parametrize("spelling", CONTAINER_SPELLINGS)
@pytest.mark.parametrize("template", CONTAINER_TEMPLATES)
def test_owned_container_prints_what_docker_prints(stack: Stack, objects: dict[str, str],
                                                     spelling: str, template: str) -> None:
    same_as_root(stack, spelling, template, objects["web"])


@pytest.mark.parametrize(("spelling", "which", "template"), OTHER_CASES)
def test_owned_image_volume_network_print_what_docker_prints(stack: Stack, objects: dict[str, str],
                                                              spelling: str, which: str, template: str) -> None:
    same_as_root(stack, spelling, template, objects[which])


def test_missing_object_gets_dockers_own_error(stack: Stack) -> None:
    ours = stack.ssh(f"docker inspect -f '{{{{.Name}}}}' {NAME}-nothing")
    theirs = stack.docker("inspect", "-f", "{{.Name}}", f"{NAME}-nothing", check=False)
    assert (ours.returncode, ours.stderr.decode()) == (theirs.returncode, theirs.stderr) == (1, theirs.stderr)


@pytest.mark.parametrize("stack", MODES, indirect=True, scope="module")
@pytest.mark.parametrize("spelling", ["inspect", "container inspect", "inspect --type container"])
def test_foreign_container_prints_the_redacted_data(stack: Stack, objects: dict[str, str], spelling: str) -> None:
    template = '{{json .Config.Env}} {{index .Config.Labels "com.example.api-token"}} {{index .Config.Labels "app"}}'
    control = stack.docker(*spelling.split(), "--format", template, objects["foreign"])
    assert SECRET in control.stdout  # root's template prints the values
    ours = stack.ssh(f"docker {spelling} --format '{template}' {objects['foreign']}")
    assert ours.returncode == 0, ours.stderr
    assert SECRET.encode() not in ours.stdout
    assert b'"DB_PASSWORD=***"' in ours.stdout and ours.stdout.endswith(b" *** root\n")


@pytest.mark.parametrize("stack", MODES, indirect=True, scope="module")
def test_foreign_and_owned_together(stack: Stack, objects: dict[str, str]) -> None:
    ours = stack.ssh(f"docker inspect -f '{{{{.Name}}}} {{{{.Config.Env}}}}' {objects['web']} {objects['foreign']}")
    lines = ours.stdout.decode().splitlines()
    assert lines[0].startswith(f"/{objects['web']} [APP_TOKEN=mine")
    assert lines[1] == f"/{objects['foreign']} [DB_PASSWORD=***]"
