"""Build contexts handed to docker as a private snapshot of the directory that was checked.

The attack: `docker build DIR` (and a compose service's build `context:` or a directory in
its `additional_contexts`). The decision resolves DIR and checks it is under the allowed
roots; then docker's CLI (or compose), running as the agent's account, resolves DIR again
(fsutil's EvalSymlinks) and walks it. A container of the agent's, bound at or above DIR,
swaps DIR (or a component of its path) for a symlink to another directory the account can
read (/etc, another user's readable files) between the check and that walk: the outside
directory is sent as the build context, and `COPY . /x` puts it in the agent's image. Files
are pinned already (gatekeeper.pinning); a directory cannot be a memfd, so it is copied.

After the decision, the ForceCommand (the execution step, gatekeeper.forcecommand) takes a
snapshot of each decided context and gives docker the snapshot's path instead:

* The directory is opened component by component from `/` with O_NOFOLLOW (as
  pinning.open_without_symlinks does): the decided path is resolved already, so a symlink
  in it now is a swap. The opened descriptor's /proc/self/fd link must still name the
  decided path (a component renamed away while it was opened): else rule
  build-context-changed.
* The tree is walked by descriptors only (openat and fstat on what was opened, never a path
  string walked again): a directory swapped for a symlink below the root fails its
  O_NOFOLLOW open and is refused (build-context-changed), never followed.
* Symlinks are copied as symlinks, as docker's own context walk sends them: the snapshot's
  root is a real directory, so nothing in it resolves outside when docker reads it.
* Regular files are hard links to the inode that was opened (linkat through /proc/self/fd
  pins that very inode: cheap, and the same file system as the work area in the usual
  layout); where the kernel refuses (another file system, fs.protected_hardlinks on a file
  of another owner) the bytes are copied from the opened descriptor. A file the account
  cannot read at all becomes an empty unreadable placeholder, so docker behaves as before:
  fine when .dockerignore names it, an error when the build needs it.
* FIFOs, sockets and devices are refused (build-context-special): reading one blocks the
  CLI or reads a device, and nothing a build needs is one.
* Size and entry caps (build-context-size): the copy is bounded like every other read.

Everything is copied, .dockerignore included: docker applies it to the snapshot itself. The
snapshot lives in `<state_dir>/pinned/ctx-<random>` (0700; the state directory is a
top-level dot entry of the root, which no container's bind reaches), is removed when docker
exits, and one left behind by a killed session is dropped after a day (pinning.drop_stale).
The audit record keeps the path the agent named; the proxy layer is unaffected (it vets the
archive the CLI sends).
"""

from __future__ import annotations

import os
import stat
import time

from gatekeeper.errors import Denied
from gatekeeper.pinning import remove_directory, write_whole

TYPE_CHECKING = False
if TYPE_CHECKING:
    Where = tuple[int, str] | tuple[str, ...]  # (argv index, word prefix) or a compose model key path

SNAPSHOT_PREFIX = "ctx-"  # entries of <state_dir>/pinned that are snapshots (directories)
MAX_BYTES = 1 << 30  # bytes copied or linked into one command's snapshots
MAX_ENTRIES = 100_000  # files, directories and links in one command's snapshots
CHUNK = 1 << 20
CHANGED = "build-context-changed"
SPECIAL = "build-context-special"
SIZE = "build-context-size"
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Budget:
    """What one command's snapshots may still take (build-context-size)."""

    __slots__ = ("size", "entries")

    def __init__(self, size: int = MAX_BYTES, entries: int = MAX_ENTRIES) -> None:
        self.size = size
        self.entries = entries

    def spend(self, where: str, *, entries: int = 1, size: int = 0) -> None:
        self.entries -= entries
        self.size -= size
        if self.entries < 0 or self.size < 0:
            raise Denied(f"build context {where!r} is larger than gatekeeper copies "
                         f"({MAX_BYTES >> 30} GiB, {MAX_ENTRIES} entries); make it smaller or "
                         "use a .dockerignore'd sibling directory", rule=SIZE)


def open_decided_directory(path: str) -> int:
    """`path` (resolved by the decision) opened without following a symlink, checked to be it."""
    parts = [part for part in path.split("/") if part]
    if ".." in parts or "." in parts:
        raise Denied(f"build context {path!r} is not a resolved path", rule=CHANGED)
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    directory = os.open("/", flags)
    try:
        for part in parts:
            inner = os.open(part, flags, dir_fd=directory)
            os.close(directory)
            directory = inner
        opened = os.open(".", DIRECTORY_FLAGS, dir_fd=directory)
    except OSError as error:
        # ELOOP/ENOTDIR: a component became a symlink (or a file) after the path was resolved.
        raise Denied(f"build context {path!r} changed after it was checked ({error.strerror})",
                     rule=CHANGED) from None
    finally:
        os.close(directory)
    if os.readlink(f"/proc/self/fd/{opened}") != "/" + "/".join(parts):
        os.close(opened)  # a component was renamed while it was opened: not the decided directory
        raise Denied(f"build context {path!r} changed after it was checked", rule=CHANGED)
    return opened


def take_snapshot(source: str, pinned: int, pinned_path: str, budget: Budget) -> str:
    """Copy the decided directory `source` into a fresh ctx-* entry of the open `pinned`
    directory (whose path is `pinned_path`); returns the snapshot's path. On a refusal the
    partial snapshot is removed."""
    name = SNAPSHOT_PREFIX + os.urandom(12).hex()
    os.mkdir(name, 0o700, dir_fd=pinned)
    try:
        target = os.open(name, DIRECTORY_FLAGS, dir_fd=pinned)
        try:
            origin = open_decided_directory(source)
            try:
                copy_tree(origin, target, source, budget)
            finally:
                os.close(origin)
        finally:
            os.close(target)
    except BaseException:
        remove_directory(pinned, name)
        raise
    return f"{pinned_path}/{name}"


def copy_tree(origin: int, target: int, where: str, budget: Budget) -> None:
    """Every entry of the open directory `origin` recreated in the open directory `target`."""
    for name in sorted(os.listdir(origin)):
        budget.spend(where)
        copy_entry(origin, target, name, f"{where}/{name}", budget)


def copy_entry(origin: int, target: int, name: str, where: str, budget: Budget) -> None:
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=origin)
    except FileNotFoundError:
        return  # removed while the walk ran: docker would not have seen it either
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            copy_directory(origin, target, name, info, where, budget)
        elif stat.S_ISLNK(info.st_mode):
            copy_link(origin, target, name, where)
        elif stat.S_ISREG(info.st_mode):
            budget.spend(where, entries=0, size=info.st_size)
            copy_file(fd, target, name, info)
        else:
            # Stops: a FIFO blocks docker's read, a device is read as a file; no build needs one.
            raise Denied(f"build context entry {where!r} is a FIFO, socket or device", rule=SPECIAL)
    finally:
        os.close(fd)


def copy_directory(origin: int, target: int, name: str, info: os.stat_result, where: str,
                   budget: Budget) -> None:
    try:
        inner = os.open(name, DIRECTORY_FLAGS, dir_fd=origin)
    except PermissionError:
        os.mkdir(name, 0, dir_fd=target)  # unreadable: as unreadable for docker
        return
    except OSError as error:  # ELOOP/ENOTDIR: swapped for a symlink after its fstat
        raise Denied(f"build context entry {where!r} changed while it was copied ({error.strerror})",
                     rule=CHANGED) from None
    try:
        opened = os.fstat(inner)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise Denied(f"build context entry {where!r} changed while it was copied", rule=CHANGED)
        os.mkdir(name, 0o700, dir_fd=target)
        copy = os.open(name, DIRECTORY_FLAGS, dir_fd=target)
        try:
            copy_tree(inner, copy, where, budget)
            os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns))
            os.fchmod(copy, stat.S_IMODE(info.st_mode))  # last: a read-only mode stops the copy
        finally:
            os.close(copy)
    finally:
        os.close(inner)


def copy_link(origin: int, target: int, name: str, where: str) -> None:
    """A symlink stays a symlink (docker sends it as one; it resolves in the image, not here)."""
    try:
        text = os.readlink(name, dir_fd=origin)
    except OSError as error:  # EINVAL: no longer a symlink
        raise Denied(f"build context entry {where!r} changed while it was copied ({error.strerror})",
                     rule=CHANGED) from None
    os.symlink(text, name, dir_fd=target)


def copy_file(fd: int, target: int, name: str, info: os.stat_result) -> None:
    """A hard link to the very inode opened (`fd`, an O_PATH descriptor); else its bytes."""
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=target, follow_symlinks=True)
        return
    except OSError:
        pass  # EXDEV (another file system), EPERM (protected_hardlinks): copy instead
    try:
        # the magic link is the inode opened (no O_NOFOLLOW: that would refuse the link itself)
        reading = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError:
        placeholder = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0, dir_fd=target)
        os.close(placeholder)  # unreadable: as unreadable for docker
        return
    try:
        copy_bytes(reading, target, name, info)
    finally:
        os.close(reading)


def copy_bytes(reading: int, target: int, name: str, info: os.stat_result) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    writing = os.open(name, flags, 0o600, dir_fd=target)
    try:
        left = info.st_size  # no more than was counted against the budget
        while left > 0:
            chunk = os.read(reading, min(CHUNK, left))
            if not chunk:
                break
            write_whole(writing, chunk)
            left -= len(chunk)
        os.utime(writing, ns=(info.st_atime_ns, info.st_mtime_ns))
        os.fchmod(writing, stat.S_IMODE(info.st_mode) & 0o777)
    finally:
        os.close(writing)


class Snapshots:
    """One command's snapshots: taken before docker runs, removed after it exits."""

    __slots__ = ("state_dir", "pinned", "names", "budget", "taken")

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.pinned = -1
        self.names: list[str] = []
        self.budget = Budget()
        self.taken: dict[str, str] = {}  # decided directory -> its snapshot (services sharing a context)

    def take(self, source: str) -> str:
        """A snapshot of the decided directory `source`; its path, for docker."""
        if source in self.taken:
            return self.taken[source]
        if self.pinned < 0:
            from gatekeeper.pinning import drop_stale

            self.pinned = open_pinned_directory(self.state_dir)
            drop_stale(self.pinned, time.time())  # snapshots a killed session left behind
        path = take_snapshot(source, self.pinned, f"{self.state_dir}/pinned", self.budget)
        self.names.append(path.rpartition("/")[2])
        self.taken[source] = path
        return path

    def remove(self) -> None:
        if self.pinned < 0:
            return
        try:
            for name in self.names:
                remove_directory(self.pinned, name)
        finally:
            os.close(self.pinned)
            self.pinned = -1


def open_pinned_directory(state_dir: str) -> int:
    from gatekeeper.inflight import Registry
    from gatekeeper.pinning import PINNED_DIR, open_private_directory

    top = Registry(state_dir).open_state_dir()
    try:
        return open_private_directory(top, PINNED_DIR, state_dir)
    finally:
        os.close(top)


def on_snapshots(argv: list[str], stdin: bytes | None, requests: list[tuple[Where, str]],
                 paths: list[str]) -> tuple[list[str], bytes | None]:
    """argv and compose's stdin with each decided context replaced by its snapshot: the one place
    (with pinning.pinned_argv) where what docker reads departs from what the decision wrote."""
    out, model = list(argv), None
    for (where, resolved), path in zip(requests, paths, strict=True):
        if isinstance(where[0], int):
            index, prefix = where
            if out[index] != f"{prefix}{resolved}":
                raise Denied("cannot place a build context snapshot in the command", rule="internal-error")
            out[index] = f"{prefix}{path}"
        else:
            model = model if model is not None else load_model(stdin)
            replace_model_value(model, where, resolved, path)
    if model is None:
        return out, stdin
    import json

    return out, json.dumps(model, indent=1).encode()  # as gatekeeper.vetting.context.Vetted.stdin


def load_model(stdin: bytes | None) -> dict[str, object]:
    import json

    model = json.loads(stdin or b"null")
    if not isinstance(model, dict):
        raise Denied("cannot place a build context snapshot in the compose model", rule="internal-error")
    return model


def replace_model_value(model: dict[str, object], keys: tuple[str, ...], resolved: str, path: str) -> None:
    node: object = model
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict) or node.get(keys[-1]) != resolved:
        raise Denied("cannot place a build context snapshot in the compose model", rule="internal-error")
    node[keys[-1]] = path
