"""The host path rule with real symlinks in a temporary root.

Every host path docker would read or write must resolve (relative to the
workdir, following symlinks) to a strict descendant of an allowed root with no
hidden component below the root. Each case says which trick it tries.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.paths import resolve_host_path
from gatekeeper.policy import load_policy
from gatekeeper.worlds import OfflineEngineWorld, RealWorld
from tests.owner_label import without_owner_label

# The tmp trees here stand in for the agent's area, which the deployment mounts nosuid,nodev.
pytestmark = pytest.mark.usefixtures("area_mounted_inert")

@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """home/ai-worker (root and workdir) with links in and out; home/ai-workerX beside it."""
    base = tmp_path_factory.mktemp("paths")
    root = base / "home" / "ai-worker"
    for d in ("work/data", "work/app", ".ssh", "work/.git", "..foo"):
        (root / d).mkdir(parents=True)
    (base / "home" / "ai-workerX").mkdir()
    (base / "shared" / "team").mkdir(parents=True)
    links = {
        "link_root": "/",
        "link_etc": "/etc",
        "link_ssh": ".ssh",
        "work/link_ssh": "../.ssh",
        "work/link_up": "../..",
        "link_self": ".",
        "work/ok": "data",
        "work/chain": "ok",
        "work/abs_ok": str(root / "work" / "app"),
        "work/sibling": str(base / "home" / "ai-workerX"),
        "work/shared": str(base / "shared" / "team"),
        ".hidden_link": "work/data",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    os.symlink(root, base / "root_link")
    return base


def make_policy(tree: Path, *roots: Path):  # type: ignore[no-untyped-def]
    workdir = tree / "home" / "ai-worker"
    roots = roots or (workdir,)
    policy_file = tree / f"policy-{len(roots)}-{roots[0].name}.toml"
    listed = ", ".join(f'"{r}"' for r in roots)
    policy_file.write_text(f'[docker]\nworkdir = "{workdir}"\n\n[paths]\nallowed_roots = [{listed}]\n')
    return load_policy(str(policy_file))


@pytest.fixture(scope="module")
def policy(tree: Path):  # type: ignore[no-untyped-def]
    return make_policy(tree)


ALLOWED = [
    # (path as the agent writes it, resolved path relative to the root)
    ("work/data", "work/data"),
    ("./work/data", "work/data"),
    ("work/data/", "work/data"),
    ("work//data", "work/data"),
    ("work/app/../data", "work/data"),
    ("work/ok", "work/data"),  # a symlink that stays inside
    ("work/chain", "work/data"),  # a chain of them
    ("work/abs_ok", "work/app"),  # an absolute symlink that stays inside
    ("work/new/dir", "work/new/dir"),  # not there yet: docker creates it
    (".hidden_link", "work/data"),  # the rule is on the resolved path
    ("{root}/work/./data", "work/data"),
    # dot entries below the top level are ordinary project files (issue 11 item 4)
    ("work/.git", "work/.git"),
    ("work/app/.env", "work/app/.env"),
    ("work/app/node_modules/.bin", "work/app/node_modules/.bin"),
    ("work/..x", "work/..x"),
]

DENIED = [
    # (path, rule, what the trick is)
    ("link_root", "host-path", "symlink to /"),
    ("link_root/etc", "host-path", "through a symlink to /"),
    ("link_root/nonexistent", "host-path", "missing file below a symlink out"),
    ("link_etc", "host-path", "symlink to /etc"),
    ("link_ssh", "host-path-hidden", "symlink to a dot directory"),
    ("work/link_ssh", "host-path-hidden", "relative symlink to a dot directory"),
    ("work/link_up", "host-path", "symlink up and out of the root"),
    ("link_self", "host-path", "symlink to the root itself"),
    ("work/sibling", "host-path", "symlink to the prefix-sharing sibling"),
    ("work/shared", "host-path", "symlink to a directory outside every root"),
    (".", "host-path", "the root itself"),
    ("{root}", "host-path", "the root itself, absolute"),
    ("{root}/", "host-path", "the root itself, trailing slash"),
    ("work/..", "host-path", "back up to the root"),
    ("..", "host-path", "dot-dot escape"),
    ("../ai-workerX", "host-path", "dot-dot into the sibling"),
    ("{root}X", "host-path", "prefix trick: /home/ai-workerX"),
    ("{root}X/secret", "host-path", "prefix trick below the sibling"),
    ("/etc/shadow", "host-path", "absolute elsewhere"),
    (".ssh", "host-path-hidden", "dot directory"),
    (".ssh/authorized_keys", "host-path-hidden", "file in a dot directory"),
    ("..foo", "host-path-hidden", "a name that starts with two dots"),
    (".bashrc", "host-path-hidden", "dot file, not there yet"),
    (".gatekeeper/claim-x", "host-path-hidden", "gatekeeper's own state directory"),
    ("work/../.ssh/rc", "host-path-hidden", "dot-dot back to a top-level dot directory"),
    ("work/.git/../../.ssh", "host-path-hidden", "through a deeper dot directory to a top-level one"),
    ("", "host-path", "empty"),
    ("work/a\x00b", "host-path", "NUL"),
]


def spell(path: str, tree: Path) -> str:
    return path.replace("{root}", str(tree / "home" / "ai-worker"))


@pytest.mark.parametrize(("path", "expected"), ALLOWED, ids=[p for p, _ in ALLOWED])
def test_allowed_paths_resolve_inside(path: str, expected: str, tree: Path, policy) -> None:  # type: ignore[no-untyped-def]
    resolved = resolve_host_path(spell(path, tree), "-v source", policy, RealWorld())
    assert resolved == str(tree / "home" / "ai-worker" / expected)


@pytest.mark.parametrize(("path", "rule", "trick"), DENIED, ids=[t for _, _, t in DENIED])
def test_escapes_are_denied(path: str, rule: str, trick: str, tree: Path, policy) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Denied) as caught:
        resolve_host_path(spell(path, tree), "-v source", policy, RealWorld())
    assert caught.value.rule == rule
    assert caught.value.message.startswith("-v source: ")


def test_denial_shows_the_resolved_path(tree: Path, policy) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Denied) as caught:
        resolve_host_path("work/link_up", "-v source", policy, RealWorld())
    assert repr(str(tree / "home")) in caught.value.message


def test_a_root_given_through_a_symlink_still_matches(tree: Path) -> None:
    policy = make_policy(tree, tree / "root_link")
    resolved = resolve_host_path("work/ok", "-v source", policy, RealWorld())
    assert resolved == str(tree / "home" / "ai-worker" / "work" / "data")


def test_a_second_root_admits_links_into_it(tree: Path) -> None:
    policy = make_policy(tree, tree / "home" / "ai-worker", tree / "shared")
    resolved = resolve_host_path("work/shared", "-v source", policy, RealWorld())
    assert resolved == str(tree / "shared" / "team")


# End to end through decide(): the resolved path is what docker gets.


def test_run_bind_through_symlink_gets_resolved_source(tree: Path, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker run --rm -v ./work/chain:/d img", policy, OfflineEngineWorld())
    assert decision.allowed, decision.reason
    volume = f"--volume={tree}/home/ai-worker/work/data:/d"
    expected = ["docker", "run", "--cap-drop=NET_RAW", "--rm", volume, "img"]
    assert without_owner_label(decision.argv) == expected


@pytest.mark.parametrize(
    "command",
    [
        "docker run -v ./link_root:/h img",
        "docker run -v ./link_ssh:/s img",
        "docker run --mount type=bind,src=./work/link_up,dst=/h img",
        "docker run -v ./link_self:/h img",
        "docker build ./work/link_up",
        "docker build -o ./link_etc work/app",
        "docker build --secret id=k,src=link_ssh/authorized_keys work/app",
    ],
)
def test_symlink_escapes_deny_end_to_end(command: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, OfflineEngineWorld())
    assert not decision.allowed
    assert decision.rule in ("host-path", "host-path-hidden"), decision.reason


def test_build_context_is_passed_resolved(tree: Path, policy) -> None:  # type: ignore[no-untyped-def]
    # the real file system; the engine (who owns tag app) assumed, there is none here
    decision = decide("docker build -t app work/abs_ok", policy, OfflineEngineWorld())
    assert decision.allowed, decision.reason
    expected = ["docker", "build", "--file=-", "-t", "app", f"{tree}/home/ai-worker/work/app"]
    assert without_owner_label(decision.argv) == expected


# Entries a container can plant that realpath alone would misjudge.


@pytest.fixture(scope="module")
def specials(tree: Path) -> Path:
    """A FIFO, a unix socket and (as root) a 0666 device node under work/."""
    import socket
    import stat

    work = tree / "home" / "ai-worker" / "work"
    os.mkfifo(work / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(work / "sock"))
    sock.close()
    if os.geteuid() == 0:
        os.mknod(work / "disk", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return work


@pytest.mark.parametrize(
    "command",
    [
        "docker run --env-file work/fifo img",  # a FIFO hangs the CLI
        "docker run -v ./work/sock:/s img",  # a host service's socket in the container
        "docker build --secret id=s,src=work/sock work/app",
    ],
)
def test_fifos_and_sockets_are_refused(command: str, specials: Path, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, OfflineEngineWorld())
    assert (decision.allowed, decision.rule) == (False, "host-path-special"), decision.reason


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_planted_device_node_is_refused(specials: Path, policy) -> None:  # type: ignore[no-untyped-def]
    # container root can mknod a 0666 block device under a bind mount; the CLI,
    # running as the agent, would then read the raw host disk as an --env-file
    decision = decide("docker run --env-file work/disk img", policy, OfflineEngineWorld())
    assert (decision.allowed, decision.rule) == (False, "host-path-special")
    assert decision.reason.startswith("--env-file")


def test_unreadable_directory_cannot_hide_a_symlink(tree: Path, policy, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A container makes work/locked (root, 0700) holding escape -> /. The agent's
    realpath cannot look inside and takes 'escape' for a plain name; the daemon,
    as root, would follow it to the host root."""
    locked = tree / "home" / "ai-worker" / "work" / "locked"
    locked.mkdir()
    os.symlink("/", locked / "escape")
    real_lstat = os.lstat

    def lstat_as_the_agent(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(locked) + "/"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat_as_the_agent)
    assert os.path.realpath(locked / "escape") == str(locked / "escape")  # the trap
    decision = decide("docker run -v ./work/locked/escape:/h img", policy, OfflineEngineWorld())
    assert (decision.allowed, decision.rule) == (False, "host-path-unreadable"), decision.reason
    assert decision.reason.startswith("-v source")


AS_NOBODY = """
import sys
from gatekeeper.decision import decide
from gatekeeper.worlds import OfflineEngineWorld, RealWorld
from gatekeeper.policy import load_policy
d = decide("docker run -v ./work/locked/escape:/h img", load_policy(sys.argv[1]), OfflineEngineWorld())
print(d.rule)
"""


SYSTEM_PYTHON = "/usr/bin/python3"  # the venv under /root is out of nobody's reach
CAN_DROP_TO_NOBODY = os.geteuid() == 0 and Path("/usr/bin/setpriv").exists()


@pytest.mark.skipif(not CAN_DROP_TO_NOBODY, reason="needs root and setpriv")
def test_unreadable_directory_for_real() -> None:
    """The same trap with real permissions: the check runs as nobody, the directory is root's 0700."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="gk-nobody-"))
    try:
        _check_as_nobody(base)
    finally:
        shutil.rmtree(base)


def _check_as_nobody(base: Path) -> None:
    import subprocess

    root = base / "home"
    (root / "work" / "locked").mkdir(parents=True)
    os.symlink("/", root / "work" / "locked" / "escape")
    for d in (base, root, root / "work"):
        d.chmod(0o755)
    (root / "work" / "locked").chmod(0o700)
    policy_file = base / "policy.toml"
    policy_file.write_text(f'[docker]\nworkdir = "{root}"\n\n[paths]\nallowed_roots = ["{root}"]\n')
    policy_file.chmod(0o644)
    project = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "env", f"PYTHONPATH={project}", SYSTEM_PYTHON, "-c", AS_NOBODY, str(policy_file)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot run as nobody here: {done.stderr.strip()[-200:]}")
    assert done.stdout.strip() == "host-path-unreadable"
