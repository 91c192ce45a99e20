"""The ForceCommand's modules from one file: their bytecode, cached beside the entry script.

An ordinary import costs the import system a search of the path, a stat of the
source and an open, read and check of its .pyc: a ForceCommand call imports about
30 of gatekeeper's modules that way, 1.5-2 ms of the call. `gatekeeper install-entry`
also writes `gatekeeper-ssh.bundle`: every module the ForceCommand can import (all of
gatekeeper but the operator commands and the proxy), compiled as import compiles them,
in one file. The entry script calls `load` with its path, and a finder at the front of
sys.meta_path serves those modules from it.

The sources stay the truth, as they are for a .pyc. The bundle is used only if:
* it is a regular file (opened without following a symlink) owned by root or by the
  owner of the installed package, and writable by nobody else: forging one takes the
  rights that editing the sources takes;
* it was written by an interpreter with this one's bytecode magic;
* every source it holds still has the inode, size and modification time it had when
  the bundle was written (an upgrade without install-entry changes them).
Otherwise it is ignored whole, never in part (an old module beside a new one would run
neither version): every module is imported from its source, the same code, slower.
tests/test_module_bundle.py checks that the bundle's code is compile() of each source.
"""

from __future__ import annotations

import marshal
import posix  # os's system calls without importing os (gatekeeper.environment)
import sys
from _frozen_importlib import ModuleSpec  # importlib.machinery's, loaded at start-up already
from _frozen_importlib_external import MAGIC_NUMBER  # importlib.util's, the same

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from posix import stat_result
    from types import ModuleType

    # name -> (is a package, source path, offset and length of its marshalled code)
    Index = dict[str, tuple[bool, str, int, int]]

FORMAT = b"gatekeeper module bundle 1\n"
PACKAGE = "gatekeeper"
# Never on the ForceCommand path (tests/test_hot_path.py): imported from their sources.
NOT_BUNDLED = ("gatekeeper.operator", "gatekeeper.proxy", "gatekeeper.__main__")
LENGTH_BYTES = 4  # the header's length, after FORMAT


def load(path: str, packages: str) -> bool:
    """Serve gatekeeper's modules from the bundle at `path` (sources under `packages`)
    if it is trustworthy and current; False: it is not, imports go to the sources."""
    try:
        found = read_bundle(path, packages)
    except Exception:  # noqa: BLE001 - missing, damaged or odd: the sources are imported instead
        return False
    if found is None:
        return False
    sys.meta_path.insert(0, BundleFinder(*found))
    return True


def usable(path: str, packages: str) -> bool:
    """Whether `load` would use this bundle (`gatekeeper doctor` asks; nothing is installed)."""
    try:
        found = read_bundle(path, packages)
    except Exception:  # noqa: BLE001 - missing, damaged or odd: not usable
        return False
    if found is None:
        return False
    posix.close(found[0])
    return True


def read_bundle(path: str, packages: str) -> tuple[int, Index] | None:
    """The bundle's descriptor (kept open: a module's code is read when it is imported)
    and its index, if the bundle is trusted and current."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    try:
        header = bundle_header(fd, packages)
    except BaseException:
        posix.close(fd)
        raise
    if header is None:
        posix.close(fd)
        return None
    return fd, header


def bundle_header(fd: int, packages: str) -> Index | None:
    status = posix.fstat(fd)
    if not trusted(status, packages):
        return None
    start = len(FORMAT) + LENGTH_BYTES
    head = posix.pread(fd, start, 0)
    if len(head) != start or not head.startswith(FORMAT):
        return None
    length = int.from_bytes(head[len(FORMAT):], "big")
    header = posix.pread(fd, length, start)
    if len(header) != length:
        return None
    magic, stamps, index = marshal.loads(header)  # noqa: S302 - a file as trusted as the sources
    code_size = sum(size for _, _, _, size in index.values())
    if magic != MAGIC_NUMBER or status.st_size != start + length + code_size or not current(packages, stamps):
        return None
    return {name: (is_package, origin, start + length + offset, size)
            for name, (is_package, origin, offset, size) in index.items()}


def trusted(status: stat_result, packages: str) -> bool:
    """A regular file owned by root or the package's owner, writable by its owner only."""
    if (status.st_mode & 0o170000) != 0o100000 or status.st_mode & 0o022:
        return False
    return status.st_uid in (0, posix.stat(f"{packages}/{PACKAGE}").st_uid)


def current(packages: str, stamps: tuple[tuple[str, tuple[int, int, int]], ...]) -> bool:
    """Every bundled source as it was when the bundle was written (a stat each, relative
    to the package directory's descriptor: ~70 of them, a third cheaper than by full path)."""
    directory = posix.open(packages, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        for relative, stamp in stamps:
            status = posix.stat(relative, dir_fd=directory)
            if (status.st_ino, status.st_size, status.st_mtime_ns) != stamp:
                return False
    finally:
        posix.close(directory)
    return True


class BundleFinder:
    """A meta path finder and loader for the modules in one bundle."""

    __slots__ = ("fd", "index")

    def __init__(self, fd: int, index: Index) -> None:
        self.fd = fd  # the bundle, open for the session (close-on-exec: docker does not get it)
        self.index = index

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        entry = self.index.get(name)
        if entry is None:
            return None
        is_package, origin = entry[0], entry[1]
        spec = ModuleSpec(name, self, origin=origin,  # type: ignore[arg-type]  # a loader by protocol
                          is_package=is_package)
        spec.has_location = True  # __file__ is the source's path, as for an ordinary import
        if is_package:
            spec.submodule_search_locations = [origin.rpartition("/")[0]]  # os.path.dirname
        return spec

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        _, _, offset, length = self.index[module.__name__]
        code = posix.pread(self.fd, length, offset)
        if len(code) != length:
            raise ImportError(f"the module bundle ended inside {module.__name__}", name=module.__name__)
        exec(marshal.loads(code), module.__dict__)  # noqa: S102, S302 - our sources' bytecode, trusted above


def bundled_sources(packages: str) -> list[tuple[str, str]]:
    """(module name, source path relative to `packages`) of every module the bundle holds."""
    import os  # install-entry's step, not the ForceCommand's

    found = []
    for directory, subdirectories, files in os.walk(os.path.join(packages, PACKAGE)):
        subdirectories[:] = sorted(name for name in subdirectories if name != "__pycache__")
        for file in sorted(files):
            if not file.endswith(".py"):
                continue
            relative = os.path.relpath(os.path.join(directory, file), packages)
            parts = relative[:-3].split(os.sep)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if not any(name == skip or name.startswith(skip + ".") for skip in NOT_BUNDLED):
                found.append((name, relative))
    return found


def bundle_bytes(packages: str) -> bytes:
    """The bundle of the sources under `packages`, compiled as import compiles them."""
    import os  # install-entry's step

    stamps, index, blobs, offset = [], {}, [], 0
    for name, relative in bundled_sources(packages):
        path = os.path.join(packages, relative)
        with open(path, "rb") as handle:
            before = os.fstat(handle.fileno())
            source = handle.read()
            after = os.fstat(handle.fileno())
        stamp = (after.st_ino, after.st_size, after.st_mtime_ns)
        if stamp != (before.st_ino, before.st_size, before.st_mtime_ns) or len(source) != after.st_size:
            raise OSError(f"{path} changed while it was read")
        blob = marshal.dumps(compile(source, path, "exec", dont_inherit=True))
        stamps.append((relative, stamp))
        index[name] = (relative.endswith("__init__.py"), path, offset, len(blob))
        blobs.append(blob)
        offset += len(blob)
    header = marshal.dumps((MAGIC_NUMBER, tuple(stamps), index))
    return FORMAT + len(header).to_bytes(LENGTH_BYTES, "big") + header + b"".join(blobs)


def write_bundle(target: str, packages: str) -> None:
    """Write the bundle atomically (a temporary file, then rename), mode 0644."""
    import os  # install-entry's step

    data = bundle_bytes(packages)
    temporary = f"{target}.tmp-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


if __name__ == "__main__":  # `python -I -m gatekeeper.module_bundle TARGET PACKAGES`: install-entry's step
    write_bundle(sys.argv[1], sys.argv[2])
