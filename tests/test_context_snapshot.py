"""Build contexts are read as snapshots of the checked directory (gatekeeper.context_snapshot).

The attack: gatekeeper resolved `docker build DIR` (a compose build context, a directory in
additional_contexts) under the roots, then docker's CLI resolved DIR again and walked it. A
container of the agent's bound above DIR swaps it (or a component) for a symlink to another
directory the account can read, and that directory is sent to the build. Now the ForceCommand
copies the decided directory, opened without following a symlink and walked by descriptors,
into the state directory and docker reads the copy; the audit record keeps the path.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from gatekeeper.context_snapshot import (
    Budget,
    Snapshots,
    on_snapshots,
    open_decided_directory,
    take_snapshot,
)
from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.pinning import drop_stale, remove_directory
from gatekeeper.policy import load_policy
from gatekeeper.worlds import OfflineEngineWorld
from tests.conftest import Deployment, gatekeeper_command, pythonpath_free_env

pytestmark = pytest.mark.usefixtures("area_mounted_inert")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A context: files, a subdirectory, links inside and out, a .dockerignore, a read-only dir."""
    base = Path(os.path.realpath(tmp_path))
    (base / "outside").mkdir()
    (base / "outside" / "secret").write_text("outside secret\n")
    root = base / "area" / "ctx"
    (root / "src" / "deep").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx\n")
    (root / ".dockerignore").write_text("ignored\n")
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "run.sh").write_text("#!/bin/sh\n")
    (root / "src" / "run.sh").chmod(0o755)
    (root / "src" / "deep" / "data").write_bytes(b"\0" * 5000)
    (root / "inside-link").symlink_to("src/main.py")
    (root / "outside-link").symlink_to(base / "outside")
    (root / "readonly").mkdir()
    (root / "readonly" / "kept").write_text("kept\n")
    (root / "readonly").chmod(0o555)
    return root


@pytest.fixture
def pinned(tmp_path: Path):  # type: ignore[no-untyped-def]
    directory = tmp_path / "state" / "pinned"
    directory.mkdir(parents=True, mode=0o700)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    yield fd, str(directory)
    os.close(fd)


def snapshot(context: Path, pinned: tuple[int, str], budget: Budget | None = None) -> Path:
    fd, path = pinned
    return Path(take_snapshot(str(context), fd, path, budget or Budget()))


def tree(root: Path) -> dict[str, object]:
    """Every entry below `root`: a link's text, a file's bytes and mode, a directory's mode."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        name, info = str(path.relative_to(root)), path.lstat()
        if path.is_symlink():
            found[name] = ("link", os.readlink(path))
        elif path.is_dir():
            found[name] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            found[name] = ("file", path.read_bytes(), stat.S_IMODE(info.st_mode))
    return found


def test_the_snapshot_is_the_context_with_links_kept_as_links(context: Path, pinned) -> None:  # type: ignore[no-untyped-def]
    copy = snapshot(context, pinned)
    assert copy.parent == Path(pinned[1]) and copy.name.startswith("ctx-")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o700
    assert tree(copy) == tree(context)
    assert os.readlink(copy / "outside-link") == str(context.parent.parent / "outside")  # not followed
    assert (copy / "outside-link").is_symlink()


def test_regular_files_are_hard_links_to_the_inode_checked(context: Path, pinned) -> None:  # type: ignore[no-untyped-def]
    copy = snapshot(context, pinned)
    assert (copy / "src" / "main.py").stat().st_ino == (context / "src" / "main.py").stat().st_ino


def test_a_file_that_cannot_be_linked_is_copied(context: Path, pinned, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def refuse_link(*args: object, **kwargs: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("gatekeeper.context_snapshot.os.link", refuse_link)
    copy = snapshot(context, pinned)
    assert tree(copy) == tree(context)
    assert (copy / "src" / "main.py").stat().st_ino != (context / "src" / "main.py").stat().st_ino


@pytest.mark.parametrize("where", ["top", "deep"])
def test_a_fifo_in_the_context_is_refused(context: Path, pinned, where: str) -> None:  # type: ignore[no-untyped-def]
    os.mkfifo(context / "pipe" if where == "top" else context / "src" / "deep" / "pipe")
    with pytest.raises(Denied) as caught:
        snapshot(context, pinned)
    assert caught.value.rule == "build-context-special"
    assert os.listdir(pinned[1]) == []  # the partial snapshot is gone


@pytest.mark.parametrize("swap", ["the context", "a component above it"])
def test_a_context_swapped_for_a_symlink_after_the_check_is_refused(context: Path, pinned, swap: str) -> None:  # type: ignore[no-untyped-def]
    """The decided path was resolved: a symlink on it now is a swap (the attack)."""
    decided = str(context)
    moved = context if swap == "the context" else context.parent
    moved.rename(moved.with_name("away"))
    moved.symlink_to(context.parent.parent / "outside")
    if swap != "the context":
        (context.parent.parent / "outside" / "ctx").mkdir()  # the decided path exists through the link
    with pytest.raises(Denied) as caught:
        snapshot(Path(decided), pinned)
    assert caught.value.rule == "build-context-changed"
    assert os.listdir(pinned[1]) == []


def test_a_directory_renamed_while_it_was_opened_is_refused(context: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """/proc/self/fd names where the opened directory is now: not the decided path, refused."""
    monkeypatch.setattr("gatekeeper.context_snapshot.os.readlink", lambda path: "/elsewhere")
    with pytest.raises(Denied) as caught:
        open_decided_directory(str(context))
    assert caught.value.rule == "build-context-changed"


def test_a_subdirectory_swapped_during_the_walk_is_refused(context: Path, pinned, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Between its fstat and its open, `src` becomes a symlink: the O_NOFOLLOW open refuses it."""
    real_fstat = os.fstat
    swapped = []

    def fstat_then_swap(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        if not swapped and os.readlink(f"/proc/self/fd/{fd}") == str(context / "src"):
            swapped.append(True)
            (context / "src").rename(context / "src.away")
            (context / "src").symlink_to(context.parent.parent / "outside")
        return info

    monkeypatch.setattr("gatekeeper.context_snapshot.os.fstat", fstat_then_swap)
    with pytest.raises(Denied) as caught:
        snapshot(context, pinned)
    assert swapped and caught.value.rule == "build-context-changed"


@pytest.mark.parametrize(("budget", "what"), [(Budget(size=4000), "bytes"), (Budget(entries=5), "entries")])
def test_a_context_over_the_caps_is_refused(context: Path, pinned, budget: Budget, what: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Denied) as caught:
        snapshot(context, pinned, budget)
    assert caught.value.rule == "build-context-size", what
    assert os.listdir(pinned[1]) == []


def test_an_unreadable_file_stays_unreadable_for_docker(context: Path, pinned, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Neither linked (not the account's) nor readable: an empty mode-0 file, as unreadable for
    docker as the original (fine when .dockerignore names it, an error when the build needs it)."""
    real_open = os.open

    def unreadable(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if str(path).startswith("/proc/self/fd/") and not flags & os.O_PATH:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("gatekeeper.context_snapshot.os.link",
                        lambda *a, **k: (_ for _ in ()).throw(PermissionError(1, "Operation not permitted")))
    monkeypatch.setattr("gatekeeper.context_snapshot.os.open", unreadable)
    copy = snapshot(context, pinned)
    assert (copy / "src" / "main.py").stat().st_size == 0
    assert stat.S_IMODE((copy / "src" / "main.py").stat().st_mode) == 0


def test_snapshots_are_removed_read_only_directories_and_all(context: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    snapshots = Snapshots(str(state))
    first, second = snapshots.take(str(context)), snapshots.take(str(context / "src"))
    assert Path(first).is_dir() and Path(second).is_dir() and first != second
    assert snapshots.take(str(context)) == first  # two services sharing a context: one copy
    assert len(os.listdir(state / "pinned")) == 2
    snapshots.remove()
    assert not Path(first).exists() and not Path(second).exists()
    assert (context / "readonly" / "kept").is_file()  # the original is untouched


def test_a_snapshot_left_for_a_day_is_dropped(context: Path, pinned) -> None:  # type: ignore[no-untyped-def]
    old, fresh = snapshot(context, pinned), snapshot(context, pinned)
    os.utime(old, (1, 1))
    drop_stale(pinned[0], os.stat(fresh).st_mtime + 10)
    assert not old.exists() and fresh.exists()
    remove_directory(pinned[0], fresh.name)
    assert os.listdir(pinned[1]) == []


# --- the decision records what to snapshot; execution places it --------------------------------


@pytest.fixture
def policy(tmp_path: Path, context: Path):  # type: ignore[no-untyped-def]
    text = (f'[docker]\nworkdir = "{context.parent}"\n[paths]\nallowed_roots = ["{context.parent}"]\n'
            f'state_dir = "{tmp_path}/state"\n')
    (tmp_path / "policy.toml").write_text(text)
    return load_policy(str(tmp_path / "policy.toml"))


def test_the_decision_names_the_context_to_snapshot(policy, context: Path) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker build -t ai-x ctx", policy, OfflineEngineWorld())
    assert decision.allowed, decision.reason
    [((index, prefix), directory)] = decision.snapshots
    assert (decision.argv[index], prefix, directory) == (str(context), "", str(context))
    argv, stdin = on_snapshots(decision.argv, decision.stdin, decision.snapshots, ["/state/pinned/ctx-1"])
    assert argv[index] == "/state/pinned/ctx-1" and stdin == decision.stdin
    assert decision.as_dict()["argv"][index] == str(context)  # type: ignore[index]  # the record


def test_a_build_context_flag_directory_is_snapshotted_too(policy, context: Path) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker build --build-context extra=ctx/src ctx", policy, OfflineEngineWorld())
    assert decision.allowed, decision.reason
    placed = {decision.argv[index]: (prefix, directory) for (index, prefix), directory in decision.snapshots}
    assert placed[f"--build-context=extra={context}/src"] == ("--build-context=extra=", f"{context}/src")


def test_stdin_builds_have_nothing_to_snapshot(policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker build -", policy, OfflineEngineWorld())
    assert decision.snapshots == []


def test_compose_model_keys_are_replaced_and_nothing_else() -> None:
    model = {"services": {"app": {"build": {"context": "/a/ctx", "additional_contexts": {"x": "/a/x"}}}}}
    where = [(("services", "app", "build", "context"), "/a/ctx"),
             (("services", "app", "build", "additional_contexts", "x"), "/a/x")]
    argv, stdin = on_snapshots(["docker", "compose"], json.dumps(model).encode(), where, ["/s/1", "/s/2"])
    assert argv == ["docker", "compose"]
    assert json.loads(stdin or b"") == {"services": {"app": {"build": {
        "context": "/s/1", "additional_contexts": {"x": "/s/2"}}}}}
    with pytest.raises(Denied):  # a model that does not say what was decided: never guessed
        on_snapshots([], json.dumps(model).encode(), [(where[0][0], "/b")], ["/s"])


BUILD_STUB = """#!/bin/sh
[ "$1" = build ] || exit 0  # the decision's own questions (images for the cache scope): none
for arg in "$@"; do last="$arg"; done
printf '%s' "$last" > "{out}.arg"
cat "$last/src/main.py" > "{out}"
ls -A "$last" > "{out}.ls"
"""


def test_forcecommand_builds_a_snapshot_and_removes_it(deployment: Deployment) -> None:
    """The real ForceCommand with a stub docker that reads the context it was given: a snapshot
    in the state directory, gone after docker exits; the audit record keeps the path."""
    context = deployment.workdir / "work" / "ctx"
    (context / "src").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx\n")
    (context / "src" / "main.py").write_text("print('snapshot')\n")
    out = deployment.root / "seen"
    deployment.docker.write_text(BUILD_STUB.format(out=out))
    result = subprocess.run(
        [*gatekeeper_command(), "--policy", str(deployment.policy)],
        env=pythonpath_free_env(SSH_ORIGINAL_COMMAND="docker build work/ctx"),
        capture_output=True, text=True, check=False, cwd=str(deployment.root),
    )
    assert result.returncode == 0, result.stderr
    given = Path(f"{out}.arg").read_text()
    assert given.startswith(f"{deployment.root}/state/pinned/ctx-")
    assert out.read_text() == "print('snapshot')\n"
    assert Path(f"{out}.ls").read_text().split() == ["Dockerfile", "src"]
    assert not Path(given).exists()  # removed after docker exited
    assert f'"{context}"' in deployment.audit_lines()[0] and "ctx-" not in deployment.audit_lines()[0]


def test_forcecommand_refuses_a_context_with_a_fifo(deployment: Deployment) -> None:
    context = deployment.workdir / "work" / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    os.mkfifo(context / "pipe")
    out = deployment.root / "seen"
    deployment.docker.write_text(BUILD_STUB.format(out=out))
    result = subprocess.run(
        [*gatekeeper_command(), "--policy", str(deployment.policy)],
        env=pythonpath_free_env(SSH_ORIGINAL_COMMAND="docker build work/ctx"),
        capture_output=True, text=True, check=False, cwd=str(deployment.root),
    )
    assert result.returncode != 0
    assert "build-context-special" in result.stderr
    assert not Path(f"{out}.arg").exists()  # docker never ran
    assert '"build-context-special"' in deployment.audit_lines()[0]
