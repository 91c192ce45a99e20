"""Attack chains through allowed commands only, judged by the real world afterwards.

Issue 4, item 4. Each chain sends only what the agent can send (`ssh
ai-worker@host docker ...`), tries to get code run outside gatekeeper or host
files read or written, then reconnects and runs an allowed command. It is
judged by what the engine and the file system look like afterwards, not by our
exit codes alone: every container and volume the engine holds is inspected
(privileges, capabilities, devices, shared namespaces, bind sources, mount
propagation, volume driver options, the canary in environments and labels),
the home's dot files are compared before and after, the directory outside the
allowed root must be unchanged, and no payload may have left its marker.

Files the agent plants (symlinks, compose files, Dockerfiles) are planted the
agent's way too: by a container that bind-mounts the agent's work area, which
is an allowed mount. The outside world the chains aim at is OUTSIDE, a
world-readable directory outside the allowed root holding a canary value: the
agent's account could read it, so only gatekeeper stands between it and the
agent.

Chains this suite found getting through, now closed and kept as plain tests:
compose include/extends hidden by UTF-16 or a `!!binary` key, compose
`bind.propagation: rshared`, and an existing volume with bind driver options
mounted by name.

Issue 12 item 3: the module runs in the three layouts of tests/e2e/stack.py
(conftest THREE_WAY): (a) CLI layer + proxy, (b) the proxy alone behind a ForceCommand
that vets nothing, (c) the CLI layer alone. The world is judged the same way in all
three. What differs in (b), where a shell as the agent is the model:
* a refusal is the docker CLI failing on the proxy's 403 with a deny record of layer
  "api" (not gatekeeper's exit 77), or, for the steps the client does itself (reading
  files named on its command line, writing --cidfile/--iidfile), the client failing;
* OUTSIDE's files are root's 0600: the agent's own account reads nothing there, so a
  canary anywhere can only have come through the engine (root), i.e. past the proxy;
* files the docker CLI writes itself as the agent may appear in the home (dot files
  too): accepted only if agent-owned, without set-id or exec bits, holding one ID.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    IMAGE,
    PROXY_ALONE,
    Stack,
    audit_offset,
    audit_records_since,
    make_keypair,
)
from .test_planted_home_files import PLUGIN_PAYLOAD, PYTHON_PAYLOAD, SHELL_PAYLOAD

pytestmark = pytest.mark.e2e

EX_NOPERM = 77
WORK = AGENT_HOME / "work"
CHAIN_DIR = WORK / "gkchain"  # everything the agent plants lives here
COMPOSE_DIR = CHAIN_DIR / "compose"
OUTSIDE = Path("/var/tmp/gk-e2e-outside")  # outside the allowed root, readable by the agent's account
CANARY = "gk-e2e-canary-5e1f0c"  # in every OUTSIDE file: seen anywhere else, a chain got through
NAME = "ai-chain"  # prefix of every engine object the chains create, for clean-up; the [names] prefix
OUTPUT_PROOF = b"PWNED"
FOREIGN = "gk-e2e-foreign"  # a running container the agent does not own (no owner label)

OUTSIDE_FILES = {
    "canary.env": f"GK_CANARY={CANARY}\n",
    "canary.labels": f"gk.canary={CANARY}\n",
    "Dockerfile": f"FROM {IMAGE}\nENV GK_CANARY={CANARY}\n",
    "compose.yaml": (
        "services:\n  leak:\n"
        f"    image: {IMAGE}\n"
        '    command: ["sleep", "30"]\n'
        f"    environment:\n      GK_CANARY: {CANARY}\n"
    ),
}

# Symlinks the agent plants under the allowed root (relative to CHAIN_DIR).
LINKS = {
    "to-root": "/",
    "to-home": "../..",  # the allowed root itself
    "to-dotdir": "../../.ssh",  # a dot directory of the home
    "to-outside": str(OUTSIDE),
}


# ---------------------------------------------------------------- judging the world


# gatekeeper's own in-flight registry (gatekeeper.inflight): written by gatekeeper, never by a container.
STATE_DIR = ".gatekeeper"


def dotfiles_digest(home: Path = AGENT_HOME) -> dict[str, str]:
    """sha256 of every dot file and dot directory entry under the home (not following links)."""
    digest = {}
    for path in sorted(home.rglob(".*")):
        relative = str(path.relative_to(home))
        if relative.split("/", 1)[0] == STATE_DIR:
            continue
        if path.is_symlink():
            digest[relative] = "link:" + str(path.readlink())
        elif path.is_file():
            digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest[relative] = "dir"
    return digest


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file below `root` (names of links and directories), to prove it unchanged."""
    if not root.exists():
        return {}
    return dotfiles_digest(root) | {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def engine_findings(stack: Stack) -> list[str]:
    """Everything dangerous about the containers and volumes the engine actually holds."""
    findings = []
    ids = stack.docker("ps", "-aq").stdout.split()
    for container in json.loads(stack.docker("inspect", *ids).stdout) if ids else []:
        findings += container_findings(container)
    for volume in stack.docker("volume", "ls", "-q").stdout.split():
        details = json.loads(stack.docker("volume", "inspect", volume).stdout)[0]
        if details.get("Options"):
            findings.append(f"volume {volume} has driver options {details['Options']}")
        if details.get("Driver") != "local":
            findings.append(f"volume {volume} uses driver {details.get('Driver')}")
    return findings


def container_findings(container: dict[str, object]) -> list[str]:
    host = container["HostConfig"]
    config = container.get("Config") or {}
    assert isinstance(host, dict) and isinstance(config, dict)
    name = container["Name"]
    checks = {
        "privileged": host.get("Privileged"),
        "capabilities added": host.get("CapAdd"),
        "devices": host.get("Devices"),
        "device cgroup rules": host.get("DeviceCgroupRules"),
        "host network": host.get("NetworkMode") == "host",
        "host pid": host.get("PidMode") == "host",
        "host ipc": host.get("IpcMode") == "host",
        "host uts": host.get("UTSMode") == "host",
        "host user namespace": host.get("UsernsMode") == "host",
        "another container's namespace": any(
            str(host.get(key) or "").startswith("container:") for key in ("NetworkMode", "PidMode", "IpcMode")
        ),
        "unconfined": any("unconfined" in str(option) for option in host.get("SecurityOpt") or []),
        "volumes from": host.get("VolumesFrom"),
        "canary in environment or labels": CANARY in json.dumps([config.get("Env"), config.get("Labels")]),
    }
    findings = [f"{name}: {what}" for what, bad in checks.items() if bad]
    for mount in container.get("Mounts") or []:  # type: ignore[attr-defined]
        findings += mount_findings(str(name), mount)
    return findings


def mount_findings(name: str, mount: dict[str, object]) -> list[str]:
    """Binds strictly below the home with no dot component, and never shared propagation."""
    source = str(mount.get("Source", ""))
    found = []
    if mount.get("Type") == "bind":
        below = source.removeprefix(f"{AGENT_HOME}/")
        if below == source or not below or any(part.startswith(".") for part in below.split("/")):
            found.append(f"{name}: bind mount of {source}")
    if mount.get("Propagation") in ("shared", "rshared"):
        found.append(f"{name}: {mount.get('Propagation')} propagation on {source}")
    return found


def remove_chain_objects(stack: Stack) -> None:
    """Whatever a chain made the engine create (containers, images, volumes, networks)."""
    containers = stack.docker("ps", "-aq", "--filter", f"name={NAME}").stdout.split()
    if containers:
        stack.docker("rm", "-f", "-v", *containers, check=False)
    images = stack.docker("images", "-q", "--filter", f"reference={NAME}*").stdout.split()
    if images:
        stack.docker("rmi", "-f", *set(images), check=False)
    for kind in ("volume", "network"):
        names = stack.docker(kind, "ls", "-q", "--filter", f"name={NAME}").stdout.split()
        if names:
            stack.docker(kind, "rm", *names, check=False)


def judge_engine(stack: Stack) -> list[str]:
    """engine_findings, then the chain's engine objects removed. Tests that may expose a hole
    call it themselves, so an expected failure fails the test, not the fixture's teardown."""
    try:
        return engine_findings(stack)
    finally:
        remove_chain_objects(stack)


@pytest.fixture(scope="module")
def outside(stack: Stack) -> Iterator[Path]:
    """OUTSIDE with its canary files, world-readable (root's 0600 in layout (b), where the
    agent's own account reads files itself: there only the engine could read them); removed
    afterwards."""
    OUTSIDE.mkdir(mode=0o755, exist_ok=True)
    for name, text in OUTSIDE_FILES.items():
        (OUTSIDE / name).write_text(text)
        (OUTSIDE / name).chmod(0o600 if stack.mode == PROXY_ALONE else 0o644)
    yield OUTSIDE
    for path in OUTSIDE.iterdir():
        path.unlink()
    OUTSIDE.rmdir()


@pytest.fixture(scope="module")
def foreign(stack: Stack) -> Iterator[str]:
    """FOREIGN, started by root straight on the engine: the target of the namespace chains."""
    stack.docker("rm", "-f", FOREIGN, check=False)
    stack.docker("run", "-d", "--name", FOREIGN, IMAGE, "sleep", "3600")
    yield FOREIGN
    stack.docker("rm", "-f", FOREIGN, check=False)


@pytest.fixture
def judged_world(stack: Stack, restored_home: Path, outside: Path, markers: Path) -> Iterator[None]:
    """Snapshot the home's dot files and OUTSIDE; afterwards they, the engine and markers must be clean."""
    before = dotfiles_digest()
    outside_before = tree_digest(outside)
    yield
    findings = judge_engine(stack)
    stack.docker("container", "prune", "-f")
    assert findings == []
    assert changed_dotfiles(stack, before, dotfiles_digest()) == [], "the home's dot files changed"
    assert tree_digest(outside) == outside_before, "a file outside the allowed root changed"
    assert sorted(markers.iterdir()) == [], "a planted payload ran"
    assert not Path(f"/{NAME}-written").exists(), "a chain wrote into the host's /"


ID_TEXT = re.compile(rb"(sha256:)?[0-9a-f]{64}\n?")


def changed_dotfiles(stack: Stack, before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The dot entries that differ; in layout (b) not those the docker CLI wrote itself."""
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if stack.mode == PROXY_ALONE:
        changed = [name for name in changed if not inert_client_write(AGENT_HOME / name)]
    return changed


def inert_client_write(path: Path) -> bool:
    """The one exception of layout (b): a file the unvetted docker CLI wrote as the agent
    (--cidfile, --iidfile): the agent's own, no set-id or exec bit, one container or image ID
    for content: nothing can run it, at a login or otherwise."""
    if path.is_symlink() or not path.is_file():
        return False
    info = path.stat()
    agent = pwd.getpwnam(AGENT)
    owned = (info.st_uid, info.st_gid) == (agent.pw_uid, agent.pw_gid)
    return owned and not info.st_mode & 0o7111 and ID_TEXT.fullmatch(path.read_bytes()) is not None


def assert_refused(
    stack: Stack,
    result: subprocess.CompletedProcess[bytes],
    since: int,
    *,
    rule: str | None = None,
    client_side: bool = False,
) -> None:
    """The layout's first layer refused the command sent after audit offset `since`.
    (a), (c): gatekeeper's exit 77. (b): the docker CLI failed and the proxy recorded the
    denial ("layer": "api"), unless `client_side`: the attack's step is one the client takes
    itself as the agent (reading a file named on its command line, a flag the classic builder
    or compose lacks), so in (b) any exit: the client fails on its own or sends the engine
    nothing harmful. The effect is judged by the world either way (judged_world). With `rule`,
    the denial names it: gatekeeper's line, or the proxy's 403 that docker prints, and its record.
    Shared by the other THREE_WAY modules."""
    said = result.stderr.decode(errors="replace")
    if stack.mode != PROXY_ALONE:
        assert result.returncode == EX_NOPERM, said
    elif not client_side:
        assert result.returncode != 0, said
        records = audit_records_since(since, layer="api")
        denials = [record for record in records if record["decision"] == "deny"]
        assert denials, f"no API-layer denial recorded: {said}"
        assert rule is None or rule in [record["rule"] for record in denials], (rule, denials)
    if rule is not None and not client_side:
        assert f"(rule {rule})" in said, said


# ---------------------------------------------------------------- the agent's own moves


def agent_script(stack: Stack, script: str, *, mount: str = f"-v {WORK}:/w") -> None:
    """Run `script` as root in a throwaway container that bind-mounts the agent's work area (allowed)."""
    result = stack.ssh(f"docker run --rm {mount} {IMAGE} sh -c '{script}'")
    assert result.returncode == 0, result.stderr


def write_steps(files: dict[str, bytes], base: str) -> list[str]:
    """Shell steps that write each file below `base`; base64 keeps any content within the word rules."""
    steps = []
    for relative, content in files.items():
        path = posixpath.join(base, relative)
        encoded = base64.b64encode(content).decode()
        steps += [f"mkdir -p {posixpath.dirname(path)}", f"echo {encoded} | base64 -d > {path}"]
    return steps


def agent_plants(stack: Stack, files: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    """Files and symlinks below CHAIN_DIR, written through an allowed bind mount of the work area."""
    base = "/w/" + str(CHAIN_DIR.relative_to(WORK))
    steps = [f"mkdir -p {base}", *write_steps(files, base)]
    for relative, target in (links or {}).items():
        steps.append(f"ln -sfn {target} {base}/{relative}")
    agent_script(stack, " && ".join(steps))


@pytest.fixture(scope="module")
def planted(stack: Stack, outside: Path) -> Iterator[Path]:
    """The links of LINKS, a benign compose file and build context, every compose chain's file."""
    files = {
        "compose.yaml": (
            f"name: {NAME}-benign\nservices:\n  s:\n    image: {IMAGE}\n    command: sleep 60\n"
        ).encode(),
        "ctx/Dockerfile": f"FROM {IMAGE}\nCOPY note /note\n".encode(),
        "ctx/note": b"built from the context\n",
    }
    files |= {f"compose/{slug}.yaml": compose_text(slug) for slug in COMPOSE_CHAINS}
    files |= {f"build-{slug}/Dockerfile": text.encode() for slug, (text, _) in BUILD_CHAINS.items()}
    links = dict(LINKS) | {
        f"build-{slug}/{link}": target for slug, (_, (link, target)) in BUILD_CHAINS.items() if link
    }
    agent_plants(stack, files, links)
    yield CHAIN_DIR
    agent_script(stack, f"rm -rf /w/{CHAIN_DIR.relative_to(WORK)}")


def reconnect(stack: Stack, *, key: Path | None = None, both: bool = False) -> list[tuple[int, bytes]]:
    """An allowed `docker ps` again: (exit, output). With `both`, on both sshd (ForceCommand and
    key command=), for chains whose payload would run at login."""
    results = []
    ports = [stack.forcecommand_port]
    if both:  # in (b) also gatekeeper's own ForceCommand sshd
        ports += [stack.keyoption_port, stack.gatekeeper_port]
    for port in dict.fromkeys(ports):
        result = stack.ssh("docker ps", key=key, port=port)
        results.append((result.returncode, result.stdout + result.stderr))
    return results


# ---------------------------------------------------------------- 1. writes into the home


CONFIG_PAYLOAD = '{{"psFormat": "PWNED {{{{.ID}}}}", "cliPluginsExtraDirs": ["{home}/work"]}}\n'

# relative path in the home -> (payload, what would run it).
HOME_TARGETS = {
    ".ssh/rc": (SHELL_PAYLOAD, "sshd runs it with /bin/sh before the forced command"),
    ".bashrc": (SHELL_PAYLOAD, "bash -c started by sshd reads it"),
    ".profile": (SHELL_PAYLOAD, "a login shell reads it"),
    ".docker/cli-plugins/docker-ps": (PLUGIN_PAYLOAD, "the docker CLI looks for plugins in ~/.docker"),
    ".docker/config.json": (CONFIG_PAYLOAD, "the docker CLI's config: formats, plugin dirs, cred helpers"),
    ".local/lib/python3.11/site-packages/usercustomize.py": (PYTHON_PAYLOAD, "the user site of python3.11"),
    "gatekeeper/__init__.py": (PYTHON_PAYLOAD, "cwd shadowing: `python -m gatekeeper` from the home"),
}

# How the container sees the home: the mount flags, and where the home lands inside.
HOME_MOUNTS = {
    "home itself": (f"-v {AGENT_HOME}:/h", "/h"),
    "trailing slash": (f"-v {AGENT_HOME}/:/h", "/h"),
    "dot-dot below the root": (f"-v {WORK}/..:/h", "/h"),
    "cwd": ("-v .:/h", "/h"),
    "parent of the root": ("-v /home:/h", f"/h/{AGENT_HOME.name}"),
    "--mount bind": (f"--mount type=bind,source={AGENT_HOME},target=/h", "/h"),
    "--mount bind, keys in caps": (f"--mount Type=bind,Source={AGENT_HOME},Target=/h", "/h"),
    "symlink to the root": (f"-v {CHAIN_DIR}/to-home:/h", "/h"),
    "symlink to /": (f"-v {CHAIN_DIR}/to-root:/h", f"/h{AGENT_HOME}"),
    "target's own directory": ("-v {home}/{directory}:/t", ""),  # the file's parent mounted directly
}


@pytest.mark.usefixtures("judged_world", "planted")
@pytest.mark.parametrize("mount", HOME_MOUNTS, ids=HOME_MOUNTS.keys())
@pytest.mark.parametrize("target", HOME_TARGETS, ids=HOME_TARGETS.keys())
def test_home_file_written_through_bind_mount(stack: Stack, markers: Path, target: str, mount: str) -> None:
    """Write a file that runs at the next login (or at gatekeeper's start) from a container, reconnect.

    Dot files and the home itself are refused as bind sources however they are
    spelled; ~/gatekeeper/ is an ordinary directory the agent may mount and
    write, and `python3 -I` never imports from it."""
    payload, why = HOME_TARGETS[target]
    flags, inside = HOME_MOUNTS[mount]
    directory, filename = posixpath.split(target)
    written = target
    if not inside:
        flags, inside, written = (
            flags.format(home=AGENT_HOME, directory=directory).rstrip("/"),
            "/t",
            filename,
        )
    marker = markers / f"{directory or 'home'}-{filename}"
    content = payload.format(marker=marker, home=AGENT_HOME).encode()
    script = " && ".join([*write_steps({written: content}, inside), f"chmod 755 {inside}/{written}"])
    since = audit_offset()
    write = stack.ssh(f"docker run --rm --name {NAME}-write {flags} {IMAGE} sh -c '{script}'")
    for status, output in reconnect(stack, both=True):
        assert status == 0, output
        assert OUTPUT_PROOF not in output, why
    if write.returncode == 0:  # allowed only below a non-hidden directory: the payload is there, inert
        assert not target.startswith("."), f"{target} was written"
        assert (AGENT_HOME / target).read_bytes() == content
    else:
        assert_refused(stack, write, since)


@pytest.mark.usefixtures("judged_world", "planted")
@pytest.mark.parametrize(
    "mount", ("home itself", "symlink to the root", "symlink to /", "parent of the root")
)
def test_authorized_keys_through_bind_mount(stack: Stack, tmp_path: Path, mount: str) -> None:
    """Add a key to ~/.ssh/authorized_keys from a container, then log in with it on both sshd."""
    key = make_keypair(tmp_path / "planted", "planted")
    public = Path(f"{key}.pub").read_text().strip()
    flags, inside = HOME_MOUNTS[mount]
    script = f'mkdir -p {inside}/.ssh && echo "{public}" >> {inside}/.ssh/authorized_keys'
    since = audit_offset()
    write = stack.ssh(f"docker run --rm --name {NAME}-keys {flags} {IMAGE} sh -c '{script}'")
    assert_refused(stack, write, since)
    for status, output in reconnect(stack, key=key, both=True):
        assert status == 255 and b"Permission denied" in output


@pytest.mark.usefixtures("judged_world")
def test_pam_environment_through_bind_mount(stack: Stack) -> None:
    """Write ~/.pam_environment from a container, then log in again: LD_* must not reach /bin/sh."""
    write = (
        f"docker run --rm -v {AGENT_HOME}:/h {IMAGE} sh -c 'echo LD_DEBUG DEFAULT=libs > /h/.pam_environment'"
    )
    stack.ssh(write)
    result = stack.ssh("docker ps")
    assert b"find library" not in result.stderr


@pytest.mark.usefixtures("judged_world", "planted")
def test_symlink_planted_by_a_container_is_resolved_on_the_host(stack: Stack) -> None:
    """Two steps: a container plants work/x -> /home/ai-worker/.ssh, the next run mounts work/x."""
    agent_script(stack, f"ln -sfn {AGENT_HOME}/.ssh /w/{NAME}-fresh-link")
    try:
        link = f"{WORK}/{NAME}-fresh-link"
        since = audit_offset()
        result = stack.ssh(f"docker run --name {NAME}-fresh -v {link}:/s {IMAGE} touch /s/rc")
        assert_refused(stack, result, since)
    finally:
        (WORK / f"{NAME}-fresh-link").unlink()


# ---------------------------------------------------------------- 2. planted symlinks as host paths


BUILD_CTX = f"{CHAIN_DIR}/ctx"
COMPOSE_BENIGN = f"{CHAIN_DIR}/compose.yaml"

# A host path the agent names, as a template over {link} (a planted symlink).
LINK_USES = {
    "bind source": f"docker run --name {NAME}-c -v {{link}}:/x {IMAGE} true",
    "bind source below": f"docker run --name {NAME}-c -v {{link}}/etc:/x {IMAGE} true",
    "--mount bind source": f"docker run --name {NAME}-c --mount type=bind,src={{link}},dst=/x {IMAGE} true",
    "build context": f"docker build -t {NAME}-img {{link}}",
    "build -f": f"docker build -t {NAME}-img -f {{link}}/Dockerfile {BUILD_CTX}",
    "run --env-file": f"docker run --name {NAME}-c --env-file {{link}}/canary.env {IMAGE} true",
    "run --label-file": f"docker run --name {NAME}-c --label-file {{link}}/canary.labels {IMAGE} true",
    "run --cidfile": f"docker run --name {NAME}-c --cidfile {{link}}/{NAME}-written {IMAGE} true",
    "build -o type=local,dest=": f"docker build -o type=local,dest={{link}} {BUILD_CTX}",
    "build --iidfile": f"docker build -t {NAME}-img --iidfile {{link}}/{NAME}-written {BUILD_CTX}",
    "build --secret src=": f"docker build -t {NAME}-img --secret id=s,src={{link}}/canary.env {BUILD_CTX}",
    "compose -f": "docker compose -f {link}/compose.yaml up -d",
    "compose --project-directory": f"docker compose -f {COMPOSE_BENIGN} --project-directory {{link}} up -d",
    "compose --env-file": f"docker compose -f {COMPOSE_BENIGN} --env-file {{link}}/canary.env up -d",
}


# The uses the docker CLI or compose carries out itself, client-side, as the agent: in layout
# (b) nothing vets them and they are not the proxy's to refuse. The agent's account cannot read
# OUTSIDE there, nor write outside its home; what the client wrote in the home is judged inert.
CLIENT_SIDE_USES = frozenset(LINK_USES) - {"bind source", "bind source below", "--mount bind source"}


def link_params() -> list[object]:
    """Every use with every link, except a path *below* the link to the home itself: that one
    (~/Dockerfile, ~/etc) is an ordinary path under the root, allowed like any other."""
    return [
        pytest.param(use, link, id=f"{use}-{link}")
        for use, template in LINK_USES.items()
        for link in LINKS
        if not (link == "to-home" and "{link}/" in template)
    ]


@pytest.mark.usefixtures("judged_world", "planted")
@pytest.mark.parametrize(("use", "link"), link_params())
def test_planted_symlink_as_host_path(stack: Stack, use: str, link: str) -> None:
    """A symlink under the allowed root to /, the root itself, a dot directory or a directory
    outside is resolved before use: refused wherever docker would read or write through it."""
    since = audit_offset()
    result = stack.ssh(LINK_USES[use].format(link=f"{CHAIN_DIR}/{link}"), timeout=120)
    if not (stack.mode == PROXY_ALONE and use in CLIENT_SIDE_USES):
        assert_refused(stack, result, since)
    assert CANARY.encode() not in result.stdout + result.stderr
    for status, output in reconnect(stack):
        assert status == 0, output


# ---------------------------------------------------------------- 3. compose files


def service(*lines: str, name: str = "s") -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f"services:\n  {name}:\n    image: {IMAGE}\n{body}"


def top_level(section: str, name: str, *lines: str) -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f"{section}:\n  {name}:\n{body}"


# slug -> compose file without its `name:` line. Every one must be refused.
COMPOSE_CHAINS: dict[str, str] = {
    "privileged": service("privileged: true"),
    "pid-host": service("pid: host"),
    "ipc-host": service("ipc: host"),
    "uts-host": service("uts: host"),
    "userns-host": service("userns_mode: host"),
    "cgroup-host": service("cgroup: host"),
    "network-mode-host": service("network_mode: host"),
    "cap-add": service("cap_add: [SYS_ADMIN]"),
    "devices": service("devices: [/dev/kmsg]"),
    "security-opt-unconfined": service("security_opt: [apparmor=unconfined, seccomp=unconfined]"),
    "use-api-socket": service("use_api_socket: true"),
    "host-root-short": service("volumes: ['/:/host']"),
    "host-root-long": service("volumes:", "  - type: bind", "    source: /", "    target: /host"),
    "home-itself": service("volumes: ['../../..:/h']"),
    "dot-dir-relative": service("volumes: ['../../../.ssh:/s']"),
    "dot-dir-interpolated": service("volumes: ['${HOME}/.ssh:/s']"),
    "bind-via-symlink-to-root": service("volumes: ['../to-root:/host']"),
    "bind-via-symlink-to-dotdir": service("volumes: ['../to-dotdir:/s']"),
    "build-context-outside": service("build:", f"  context: {OUTSIDE}"),
    "build-context-dotdot": service("build:", "  context: ../../../.."),
    "build-context-symlink": service("build:", "  context: ../to-outside"),
    "build-dockerfile-outside": service("build:", "  context: ../ctx", f"  dockerfile: {OUTSIDE}/Dockerfile"),
    "build-additional-context": service(
        "build:", "  context: ../ctx", "  additional_contexts:", f"    stolen: {OUTSIDE}"
    ),
    "env-file-outside": service(f"env_file: {OUTSIDE}/canary.env"),
    "env-file-long-form": service("env_file:", f"  - path: {OUTSIDE}/canary.env", "    required: false"),
    "env-file-symlink": service("env_file: ../to-outside/canary.env"),
    "label-file-outside": service(f"label_file: {OUTSIDE}/canary.labels"),
    "secret-file-outside": service("secrets: [stolen]")
    + f"secrets:\n  stolen:\n    file: {OUTSIDE}/canary.env\n",
    "config-file-outside": service("configs: [stolen]")
    + f"configs:\n  stolen:\n    file: {OUTSIDE}/canary.env\n",
    "include-outside": f"include:\n  - {OUTSIDE}/compose.yaml\n" + service(),
    "include-long-form": f"include:\n  - path: {OUTSIDE}/compose.yaml\n" + service(),
    "include-env-file-outside": (
        f"include:\n  - path: ../compose.yaml\n    env_file: {OUTSIDE}/canary.env\n" + service()
    ),
    "include-via-symlink": "include:\n  - ../to-outside/compose.yaml\n" + service(),
    "extends-outside": service("extends:", f"  file: {OUTSIDE}/compose.yaml", "  service: leak"),
    "volume-driver-opts-bind-root": service("volumes: ['data:/host']")
    + top_level(
        "volumes", "data", "driver: local", "driver_opts:", "  type: none", "  o: bind", "  device: /"
    ),
    "volume-foreign-driver": service("volumes: ['data:/host']")
    + top_level("volumes", "data", "driver: vieux/sshfs"),
    "network-host": service("networks: [hostnet]")
    + top_level("networks", "hostnet", "name: host", "external: true"),
    "network-driver-opts": service()
    + top_level("networks", "default", "driver_opts:", "  com.docker.network.bridge.name: eth0"),
    "volumes-from": service(f"volumes_from: ['container:{FOREIGN}']"),
    "cgroup-parent": service("cgroup_parent: /"),
    "bind-rshared-propagation": service(
        "volumes:",
        "  - type: bind",
        "    source: ./",
        "    target: /w",
        "    bind:",
        "      propagation: rshared",
    ),
}

# Compose reads these before gatekeeper's include/extends screen can see them.
# fmt: off
ENCODED_COMPOSE_CHAINS = {
    # go-yaml decodes UTF-16 with a BOM; the byte screen looks for b"include" and finds none.
    "include-utf16": ("utf-16", f"include:\n  - {OUTSIDE}/compose.yaml\n" + service()),
    # A !!binary key decodes to the string "include": no literal word, no backslash.
    "include-binary-key": ("utf-8", f"!!binary aW5jbHVkZQ==:\n  - {OUTSIDE}/compose.yaml\n" + service()),
    "extends-binary-key": ("utf-8", service("!!binary ZXh0ZW5kcw==:", f"  file: {OUTSIDE}/compose.yaml",
                                            "  service: leak")),
}
# fmt: on
COMPOSE_CHAINS |= {slug: text for slug, (_, text) in ENCODED_COMPOSE_CHAINS.items()}

# The chains whose file compose reads itself (env files, includes, build contexts): in layout
# (b) compose fails on OUTSIDE's root-only files before anything reaches the proxy.
CLIENT_SIDE_COMPOSE = frozenset({
    "build-context-outside", "build-context-dotdot", "build-context-symlink", "build-dockerfile-outside",
    "build-additional-context", "env-file-outside", "env-file-long-form", "env-file-symlink",
    "label-file-outside", "include-outside", "include-long-form", "include-env-file-outside",
    "include-via-symlink", "extends-outside", *ENCODED_COMPOSE_CHAINS,
})  # fmt: skip


def compose_text(slug: str) -> bytes:
    encoding = ENCODED_COMPOSE_CHAINS.get(slug, ("utf-8", ""))[0]
    return (f"name: {NAME}-{slug}\n" + COMPOSE_CHAINS[slug]).encode(encoding)


def compose_params() -> list[object]:
    return [pytest.param(slug, id=slug) for slug in COMPOSE_CHAINS]


@pytest.mark.usefixtures("judged_world", "planted", "foreign")
@pytest.mark.parametrize("slug", compose_params())
def test_compose_chain(stack: Stack, slug: str) -> None:
    """A compose file is `docker run` in another spelling: privileges, shared namespaces,
    binds and build contexts outside the root, host files read into the project."""
    since = audit_offset()
    up = stack.ssh(f"docker compose -f {COMPOSE_DIR}/{slug}.yaml up -d", timeout=120)
    for status, output in reconnect(stack):
        assert status == 0, output
    assert judge_engine(stack) == []
    assert CANARY.encode() not in up.stdout + up.stderr
    assert_refused(stack, up, since, client_side=slug in CLIENT_SIDE_COMPOSE)


# ---------------------------------------------------------------- 4. docker build


# slug -> (Dockerfile, (symlink in the context, its target) or ("", "")).
BUILD_CHAINS = {
    "copy-dotdot": (f"FROM {IMAGE}\nCOPY ../../../../../..{OUTSIDE}/canary.env /stolen\n", ("", "")),
    "copy-absolute": (f"FROM {IMAGE}\nCOPY {OUTSIDE}/canary.env /stolen\n", ("", "")),
    "copy-through-symlink": (f"FROM {IMAGE}\nCOPY root{OUTSIDE}/canary.env /stolen\n", ("root", "/")),
    "copy-symlinked-file": (f"FROM {IMAGE}\nCOPY canary /stolen\n", ("canary", f"{OUTSIDE}/canary.env")),
    "add-file-url": (f"FROM {IMAGE}\nADD file://{OUTSIDE}/canary.env /stolen\n", ("", "")),
    "copy-shadow": (f"FROM {IMAGE}\nCOPY ../../etc/shadow /stolen\n", ("", "")),
}


@pytest.mark.usefixtures("judged_world", "planted")
def test_build_control(stack: Stack) -> None:
    """The builder works here, so the refusals below mean something: COPY from the context lands."""
    build = stack.ssh(f"docker build -t {NAME}-control {BUILD_CTX}", timeout=120)
    assert build.returncode == 0, build.stderr
    run = stack.ssh(f"docker run --rm {NAME}-control cat /note")
    assert run.stdout == b"built from the context\n", run.stderr


@pytest.mark.usefixtures("judged_world", "planted")
@pytest.mark.parametrize("slug", BUILD_CHAINS, ids=BUILD_CHAINS.keys())
def test_build_copies_only_from_the_context(stack: Stack, slug: str) -> None:
    """The build context is the boundary: a Dockerfile cannot COPY a host file from outside it,
    through `..`, an absolute path, a symlink in the context or a file:// URL. The build may run;
    the image it makes must not hold the file (checked by running it)."""
    build = stack.ssh(f"docker build -t {NAME}-{slug} {CHAIN_DIR}/build-{slug}", timeout=120)
    run = stack.ssh(f"docker run --rm {NAME}-{slug} cat /stolen")
    seen = build.stdout + build.stderr + run.stdout + run.stderr
    assert CANARY.encode() not in seen
    assert b"root:" not in run.stdout
    for status, output in reconnect(stack):
        assert status == 0, output


# ---------------------------------------------------------------- 5. volumes with driver options


VOLUME_CHAINS = {
    "volume create": f"docker volume create --driver local -o type=none -o o=bind -o device=/ {NAME}-vol",
    "run --mount volume-opt": (
        f"docker run --name {NAME}-c --mount type=volume,src={NAME}-vol,dst=/x,"
        f"volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/ {IMAGE} true"
    ),
    "run --mount volume-opt, quoted csv": (
        f"docker run --name {NAME}-c --mount 'type=volume,src={NAME}-vol,dst=/x,"
        f'"volume-opt=o=bind,ro",volume-opt=type=none,volume-opt=device=/\' {IMAGE} true'
    ),
    "run --mount volume-driver": (
        f"docker run --name {NAME}-c --mount type=volume,src={NAME}-vol,dst=/x,volume-driver=local "
        f"{IMAGE} true"
    ),
    "run --volume-driver": f"docker run --name {NAME}-c --volume-driver local -v {NAME}-vol:/x {IMAGE} true",
    "compose driver_opts": f"docker compose -f {COMPOSE_DIR}/volume-driver-opts-bind-root.yaml up -d",
}


# Naming the default driver carries no option: the CLI layer refuses the flags; the proxy alone
# makes the new volume a plain local one (no options: judged_world checks), which is harmless.
DEFAULT_DRIVER_ONLY = frozenset(
    VOLUME_CHAINS[key] for key in ("run --mount volume-driver", "run --volume-driver")
)


@pytest.mark.usefixtures("judged_world", "planted")
@pytest.mark.parametrize("command", VOLUME_CHAINS.values(), ids=VOLUME_CHAINS.keys())
def test_volume_with_bind_options(stack: Stack, command: str) -> None:
    """A local volume with type=none,o=bind,device=/ is a bind mount of / in disguise."""
    since = audit_offset()
    result = stack.ssh(command, timeout=120)
    if not (stack.mode == PROXY_ALONE and command in DEFAULT_DRIVER_ONLY):
        assert_refused(stack, result, since)
    after = stack.ssh(f"docker run --rm -v {NAME}-vol:/x {IMAGE} ls /x")
    assert b"etc" not in after.stdout
    for status, output in reconnect(stack):
        assert status == 0, output


OPERATOR_VOLUME = f"{NAME}-operator-bind"
@pytest.fixture
def operator_bind_volume(stack: Stack, outside: Path) -> Iterator[str]:
    """A volume root made for its own services: a bind of OUTSIDE in volume form."""
    options = ("-o", "type=none", "-o", "o=bind", "-o", f"device={outside}")
    stack.docker("volume", "create", "--driver", "local", *options, OPERATOR_VOLUME)
    yield OPERATOR_VOLUME
    remove_chain_objects(stack)
    stack.docker("volume", "rm", "-f", OPERATOR_VOLUME, check=False)


def test_existing_bind_volume_is_not_a_way_out(stack: Stack, operator_bind_volume: str) -> None:
    """Mount a volume someone else created with bind driver options and read through it."""
    result = stack.ssh(f"docker run --rm -v {operator_bind_volume}:/x {IMAGE} cat /x/canary.env")
    assert CANARY.encode() not in result.stdout


# ---------------------------------------------------------------- 6. one-step escapes


# No --rm: if one got through, the container stays for judged_world to inspect.
DIRECT_ESCAPES = {
    "privileged": "--privileged",
    "privileged=1": "--privileged=1",
    "host pid": "--pid=host",
    "host network": "--network=host",
    "host network, long form": "--network name=host",
    "another container's pid": f"--pid=container:{FOREIGN}",
    "host root": "-v /:/host",
    "host root via dot-dot": f"-v {WORK}/../../..:/host",
    "engine socket": "-v /run/gk-e2e/docker.sock:/s",
    "device": "--device /dev/kmsg",
    "cap add": "--cap-add SYS_ADMIN",
    "cap add, long spelling": "--cap-add=CAP_SYS_ADMIN",
    "security-opt unconfined": "--security-opt seccomp=unconfined",
    "userns host": "--userns=host",
    "cgroupns host": "--cgroupns=host",
    "volumes-from": f"--volumes-from {FOREIGN}",
    "rshared bind": f"-v {CHAIN_DIR}:/w:rshared",
    "host root read-only": "-v /:/host:ro",
    "--mount bind of /": "--mount type=bind,src=/,dst=/h,readonly",
    "--mount repeated source, last wins": f"--mount type=bind,source={CHAIN_DIR},source=/,target=/h",
    "--mount rshared propagation": f"--mount type=bind,src={CHAIN_DIR},dst=/w,bind-propagation=rshared",
    "--mount volume subpath": f"--mount type=volume,src={NAME}-vol,dst=/x,volume-subpath=../..",
}

# Build flags that read or write host paths or lift the build sandbox.
BUILD_ESCAPES = {
    "--build-context outside": f"--build-context stolen={OUTSIDE}",
    "--cache-from local outside": f"--cache-from type=local,src={OUTSIDE}",
    "--cache-to local outside": f"--cache-to type=local,dest={OUTSIDE}",
    "-o local dest /": "-o type=local,dest=/",
    "-o local dest dot dir": f"-o type=local,dest={AGENT_HOME}/.docker/cli-plugins",
    "--iidfile dot file": f"--iidfile {AGENT_HOME}/.profile",
    "--secret outside": f"--secret id=s,src={OUTSIDE}/canary.env",
    "-f outside": f"-f {OUTSIDE}/Dockerfile",
    "--ssh agent": "--ssh default",
    "--allow insecure": "--allow security.insecure",
    "--network host": "--network host",
}

# In layout (b) the docker CLI's legacy builder (DOCKER_BUILDKIT=0: the proxy serves no
# BuildKit session) refuses these BuildKit-only flags itself, or cannot read OUTSIDE.
BUILD_CLIENT_SIDE = frozenset(BUILD_ESCAPES[flag] for flag in (
    "--build-context outside", "--cache-to local outside", "-o local dest /", "-o local dest dot dir",
    "--secret outside", "-f outside", "--ssh agent", "--allow insecure",
))  # fmt: skip

# compose subcommands with run flags of their own, on the benign project.
COMPOSE_COMMAND_ESCAPES = {
    "run -v /:/host": "run --rm -v /:/host s true",
    "run --privileged": "run --rm --privileged s true",
    "run --cap-add": "run --rm --cap-add SYS_ADMIN s true",
    "run -v dot dir": f"run --rm -v {AGENT_HOME}/.ssh:/s s true",
    "up --watch": "up --watch",
    "exec": "exec s sh",
    "cp": f"cp s:/etc/passwd {CHAIN_DIR}/stolen",
}

# In layout (b) compose itself stops these: `compose run` has no --privileged flag, and the
# benign project configures no watch (compose starts it, then gives up).
COMPOSE_CLIENT_SIDE = frozenset(COMPOSE_COMMAND_ESCAPES[name] for name in ("run --privileged", "up --watch"))


@pytest.mark.usefixtures("judged_world", "planted", "foreign")
@pytest.mark.parametrize("flags", DIRECT_ESCAPES.values(), ids=DIRECT_ESCAPES.keys())
def test_direct_escape_is_denied(stack: Stack, flags: str) -> None:
    """The one-step versions: each must be refused before the engine sees it."""
    since = audit_offset()
    result = stack.ssh(f"docker run --name {NAME}-escape {flags} {IMAGE} true")
    assert_refused(stack, result, since)


@pytest.mark.usefixtures("judged_world", "planted")
@pytest.mark.parametrize("flags", BUILD_ESCAPES.values(), ids=BUILD_ESCAPES.keys())
def test_build_escape_is_denied(stack: Stack, flags: str) -> None:
    """docker build reads and writes host paths of its own (contexts, caches, outputs, secrets)."""
    since = audit_offset()
    result = stack.ssh(f"docker build -t {NAME}-img {flags} {BUILD_CTX}", timeout=120)
    if flags == BUILD_ESCAPES["--iidfile dot file"] and stack.mode == PROXY_ALONE:
        assert result.returncode == 0, result.stderr  # (b)'s exception: judged inert by judged_world
    else:
        assert_refused(stack, result, since, client_side=flags in BUILD_CLIENT_SIDE)
    for status, output in reconnect(stack):
        assert status == 0, output


@pytest.mark.usefixtures("judged_world", "planted")
@pytest.mark.parametrize("command", COMPOSE_COMMAND_ESCAPES.values(), ids=COMPOSE_COMMAND_ESCAPES.keys())
def test_compose_command_escape_is_denied(stack: Stack, command: str) -> None:
    """A benign compose file, and the escape in the compose command line instead."""
    if command.startswith(("exec", "cp")):  # a running service, so that the request reaches the engine
        up = stack.ssh(f"docker compose -f {COMPOSE_BENIGN} up -d", timeout=120)
        assert up.returncode == 0, up.stderr
    since = audit_offset()
    result = stack.ssh(f"docker compose -f {COMPOSE_BENIGN} {command}", timeout=120)
    assert_refused(stack, result, since, client_side=command in COMPOSE_CLIENT_SIDE)
    assert not (CHAIN_DIR / "stolen").exists()
    for status, output in reconnect(stack):
        assert status == 0, output
