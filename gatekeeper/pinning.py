"""Files the docker CLI reads, handed to it as the bytes that were checked.

`docker run --env-file F` and `--label-file F` make the CLI (as the agent's
account) read F after gatekeeper decided. A container bound at or above F
could swap it in that window: for a symlink to another file the account can
read (carried into the container's environment), or for new content (a
label file with `gatekeeper.owner=...` after the reserved-label check). So
the decision reads F once, opening every component without following a
symlink (the path is resolved already, so a link now is a swap), checks those
bytes, and the ForceCommand gives docker a sealed memfd holding exactly them
(`--env-file=/proc/self/fd/N`). The audit record keeps the path.

Directories (build contexts) cannot be pinned this way: the CLI's Go code
resolves them again (fsutil's EvalSymlinks). The ForceCommand gives docker a
snapshot of each checked context directory instead, in the same `pinned`
entry (gatekeeper.context_snapshot). Compose files are pinned by feeding the
vetted model on stdin (gatekeeper.vetting.compose).

A compose build's Dockerfile cannot be a descriptor either (compose, a plugin,
resolves the path with EvalSymlinks and stats it; a memfd's link names no
file): the vetted model names a copy of the checked bytes in the state
directory instead (gatekeeper.vetting.images.pin_model_dockerfile), which
write_pinned_files puts there before compose runs. The state directory is a
top-level dot entry of the root: the path rule keeps every container's bind
out of it, so nothing but gatekeeper writes there.
"""

from __future__ import annotations

import os

from gatekeeper.errors import Denied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.grammar.pflag import FlagUse
    from gatekeeper.vetting.context import Context

PIN_LIMIT = 1 << 20  # bytes of one env or label file


def pin_read(ctx: Context, use: FlagUse, resolved: str) -> None:
    """Read `resolved` once for the flag `use`; label files are checked on those bytes."""
    data = ctx.world.read_pinned(resolved, PIN_LIMIT)
    if len(data) > PIN_LIMIT:
        raise Denied(f"{use.spelled} {resolved!r} is larger than 1 MiB", rule="host-path")
    if use.flag.long == "label-file":
        from gatekeeper.label_rules import check_label_key

        for line in data.decode("utf-8", "replace").splitlines():
            check_label_key(line.strip(), f"{use.spelled} {use.value}")
    ctx.pin_value(use, resolved, data)


def pin_copy(ctx: Context, use: FlagUse, resolved: str) -> None:
    """compose run --env-from-file: read once without symlinks, spelled as the path of a copy
    of those bytes in the state directory (write_pinned_files). Stops: a container bound above
    the file swapping it for a symlink after the check, and compose (as the agent's account)
    carrying another file it can read into the container's environment."""
    data = ctx.world.read_pinned(resolved, PIN_LIMIT)
    if len(data) > PIN_LIMIT:
        raise Denied(f"{use.spelled} {resolved!r} is larger than 1 MiB", rule="host-path")
    copy = pinned_copy_path(ctx.policy.state_dir, data)
    ctx.vetted.copies[copy] = (resolved, data)
    ctx.replace_value(use, copy)


def read_without_symlinks(path: str, limit: int) -> bytes:
    """Open `path` component by component with O_NOFOLLOW; it must be a regular file."""
    import stat

    fd = open_without_symlinks(path)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Denied(f"host path {path!r} is not a regular file", rule="host-path-special")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_without_symlinks(path: str) -> int:
    parts = [part for part in path.split("/") if part]
    if not parts or ".." in parts or "." in parts:
        raise Denied(f"host path {path!r} is not a resolved file path", rule="host-path")
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    directory = os.open("/", flags)
    try:
        for part in parts[:-1]:
            inner = os.open(part, flags, dir_fd=directory)
            os.close(directory)
            directory = inner
        reading = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        return os.open(parts[-1], reading, dir_fd=directory)
    except FileNotFoundError:
        raise MissingFile(f"host path {path!r} does not exist", rule="host-path") from None
    except OSError as error:
        # ELOOP/ENOTDIR: a component became a symlink after the path was resolved.
        raise Denied(f"host path {path!r} changed while it was checked ({error.strerror})",
                     rule="host-path") from None
    finally:
        os.close(directory)


class MissingFile(Denied):
    """The file is not there (callers that may skip a missing file catch this one)."""


def pinned_argv(argv: list[str], pins: list[tuple[int, str, bytes]]) -> tuple[list[str], list[int]]:
    """argv with each pinned word pointing at a sealed memfd of its bytes; the descriptors
    are inheritable (docker opens /proc/self/fd/N) and closed by the caller afterwards."""
    import fcntl

    out, fds = list(argv), []
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    for index, prefix, data in pins:
        fd = os.memfd_create("gatekeeper-pinned", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        fds.append(fd)
        write_whole(fd, data)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        if not out[index].startswith(prefix):
            raise Denied("cannot place a pinned file in the command", rule="internal-error")
        out[index] = f"{prefix}/proc/self/fd/{fd}"
    return out, fds


PINNED_DIR = "pinned"  # the state directory's entry for checked copies docker reads
PINNED_MAX_AGE = 86400.0  # seconds a pinned copy is kept after it was last written


def pinned_copy_path(state_dir: str, data: bytes) -> str:
    """Named by its content: two sessions pinning the same bytes write the same file."""
    import hashlib

    return f"{state_dir}/{PINNED_DIR}/{hashlib.sha256(data).hexdigest()}"


def write_pinned_files(state_dir: str, files: list[tuple[str, bytes]], now: float) -> None:
    """Write each (path, bytes) the decision pinned into the state directory's `pinned`
    entry, under its content name (a fresh file renamed into place: a reader sees the old
    copy or the new one, both the same bytes); copies not written for a day are dropped."""
    from gatekeeper.inflight import Registry, StateError

    top = Registry(state_dir).open_state_dir()
    try:
        directory = open_private_directory(top, PINNED_DIR, state_dir)
    finally:
        os.close(top)
    try:
        for path, data in files:
            if path != pinned_copy_path(state_dir, data):
                raise StateError(f"a pinned file {path!r} is not named by its content")
            write_replacing(directory, path.rpartition("/")[2], data)
        drop_stale(directory, now)
    finally:
        os.close(directory)


def open_private_directory(parent: int, name: str, where: str) -> int:
    """`name` below `parent`, made 0700 if missing; ours, a real directory, writable by nobody else."""
    import stat

    from gatekeeper.inflight import StateError

    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError as error:
        raise StateError(f"cannot open {where}/{name} ({error.strerror})") from None
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o022:
        os.close(fd)
        raise StateError(f"{where}/{name} must be owned by this account and writable by nobody else")
    return fd


def write_whole(fd: int, data: bytes) -> None:
    """All of `data` to `fd` (os.write may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_replacing(directory: int, name: str, data: bytes) -> None:
    temporary = f".{name}.{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600, dir_fd=directory)
    try:
        write_whole(fd, data)
    finally:
        os.close(fd)
    os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)


def drop_stale(directory: int, now: float) -> None:
    """What a killed session left behind in `directory`, not written for a day: pinned copies,
    build context snapshots (ctx-*, gatekeeper.context_snapshot), render stages (new_stage)."""
    import stat

    for name in os.listdir(directory):
        try:
            info = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if now - info.st_mtime <= PINNED_MAX_AGE:
                continue
            if stat.S_ISDIR(info.st_mode):
                remove_directory(directory, name)
            else:
                os.unlink(name, dir_fd=directory)
        except FileNotFoundError:
            pass  # another session dropped or replaced it


def remove_directory(pinned: int, name: str) -> None:
    """Remove the directory `name` below the open `pinned` one and all below it, by descriptors
    (a build context snapshot, gatekeeper.context_snapshot)."""
    try:
        path = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pinned)
    except FileNotFoundError:
        return
    try:
        os.chmod(f"/proc/self/fd/{path}", 0o700)  # a copied read-only (or unreadable) directory
        inner = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=path)
    finally:
        os.close(path)
    try:
        empty_directory(inner)
    finally:
        os.close(inner)
    os.rmdir(name, dir_fd=pinned)


def empty_directory(directory: int) -> None:
    import stat

    for name in os.listdir(directory):
        info = os.stat(name, dir_fd=directory, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            remove_directory(directory, name)
        else:
            os.unlink(name, dir_fd=directory)


# Files compose reads while rendering a project, staged (gatekeeper.vetting.compose_render).
STAGE_DIR = "render"  # the state directory's entry for staged projects, one private directory each


def new_stage(state_dir: str | None, now: float) -> str:
    """A fresh private directory for one render: below the state directory's `render` entry
    (which no container reaches), or a private temporary directory without one (`gatekeeper
    check`, the operator's own account). Stages left by a killed session are dropped after a day."""
    import tempfile

    if state_dir is None:
        return tempfile.mkdtemp(prefix="gatekeeper-render-")
    from gatekeeper.inflight import Registry

    top = Registry(state_dir).open_state_dir()
    try:
        stages = open_private_directory(top, STAGE_DIR, state_dir)
    finally:
        os.close(top)
    try:
        drop_stale(stages, now)
    finally:
        os.close(stages)
    return tempfile.mkdtemp(prefix="", dir=f"{state_dir}/{STAGE_DIR}")


def stage_files(root: str, files: dict[str, bytes]) -> None:
    """Write each (absolute, normalised path -> bytes) at root + path, 0600, never over a file;
    a path ending in "/" is a directory compose must find (a project directory)."""
    if not root.startswith("/") or root == "/":
        raise Denied("cannot stage a render outside a stage directory", rule="internal-error")
    for path, data in files.items():
        parts = path.rstrip("/").split("/")
        if not path.startswith("/") or any(part in ("", ".", "..") for part in parts[1:]):
            raise Denied(f"cannot stage {path!r} for the render", rule="internal-error")
        os.makedirs(root + path.rpartition("/")[0], mode=0o700, exist_ok=True)
        if path.endswith("/"):
            continue
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(root + path, flags, 0o600)
        try:
            write_whole(fd, data)
        finally:
            os.close(fd)


def drop_stage(root: str) -> None:
    import shutil

    shutil.rmtree(root, ignore_errors=True)
