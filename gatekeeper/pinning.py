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
resolves them again (fsutil's EvalSymlinks); compose files are pinned by
feeding the vetted model on stdin (gatekeeper.vetting.compose).
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
        raise Denied(f"host path {path!r} does not exist", rule="host-path") from None
    except OSError as error:
        # ELOOP/ENOTDIR: a component became a symlink after the path was resolved.
        raise Denied(f"host path {path!r} changed while it was checked ({error.strerror})",
                     rule="host-path") from None
    finally:
        os.close(directory)


def pinned_argv(argv: list[str], pins: list[tuple[int, str, bytes]]) -> tuple[list[str], list[int]]:
    """argv with each pinned word pointing at a sealed memfd of its bytes; the descriptors
    are inheritable (docker opens /proc/self/fd/N) and closed by the caller afterwards."""
    import fcntl

    out, fds = list(argv), []
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    for index, prefix, data in pins:
        fd = os.memfd_create("gatekeeper-pinned", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        fds.append(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        if not out[index].startswith(prefix):
            raise Denied("cannot place a pinned file in the command", rule="internal-error")
        out[index] = f"{prefix}/proc/self/fd/{fd}"
    return out, fds
