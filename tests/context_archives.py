"""Build context archives whose Dockerfile the engine reads otherwise than a naive reader.

Each shape holds a harmless `Dockerfile` a plain reading finds (Python's tarfile, the first or
last member named so) and an `evil` one that the engine (Go's archive/tar, members unpacked in
order, written through earlier symlinks) builds instead. Shared by the unit tests
(tests/test_build_context.py) and the end-to-end ones (tests/e2e/test_context_archives.py),
whose control builds each shape on the bare engine and finds the evil one built.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

BLOCK = tarfile.BLOCKSIZE


def header(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytearray:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, len(data), linkname, 0o644
    return bytearray(info.tobuf(tarfile.USTAR_FORMAT))


def sealed(block: bytearray) -> bytes:
    """The block with its checksum computed again (after a field was patched)."""
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % BLOCK)


def member(block: bytearray | bytes, data: bytes = b"") -> bytes:
    return bytes(block) + padded(data)


def plain(name: str, data: bytes) -> bytes:
    return member(header(name, data), data)


def link(name: str, target: str) -> bytes:
    return member(header(name, kind=tarfile.SYMTYPE, linkname=target))


def extended(kind: bytes, data: bytes) -> bytes:
    """A GNU long name (L) or a pax header (x, g) carrying `data`."""
    block = header("././@LongLink" if kind == b"L" else "pax", data, kind)
    return member(sealed(block), data)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n"
    size = len(body) + len(str(len(body)))
    size = len(body) + len(str(size))
    return f"{size}{body}".encode()


def end() -> bytes:
    return b"\x00" * (2 * BLOCK)


def duplicate(harmless: bytes, evil: bytes) -> bytes:
    """Two members named Dockerfile: the engine writes both, the last one stays."""
    return plain("Dockerfile", harmless) + plain("Dockerfile", evil) + end()


def through_symlink(harmless: bytes, evil: bytes) -> bytes:
    """`a -> .`, then `a/Dockerfile`: unpacked through the link, it replaces ./Dockerfile."""
    return plain("Dockerfile", harmless) + link("a", ".") + plain("a/Dockerfile", evil) + end()


def through_absolute_symlink(harmless: bytes, evil: bytes) -> bytes:
    """`d -> /` is the context's root when the engine unpacks in its chroot."""
    return plain("Dockerfile", harmless) + link("d", "/") + plain("d/Dockerfile", evil) + end()


def lowercase_only(harmless: bytes, evil: bytes) -> bytes:
    """No Dockerfile, a dockerfile: the engine (and the docker CLI) fall back to it."""
    return plain("Dockerfile.txt", harmless) + plain("dockerfile", evil) + end()


def size_after_nul(harmless: bytes, evil: bytes) -> bytes:
    """The evil Dockerfile's size field starts with a NUL: Python reads size 0 (an empty
    Dockerfile), Go trims the NUL and reads the real size."""
    block = header("Dockerfile", evil)
    block[124:136] = b"\x00" + b"%010o" % len(evil) + b" "
    return plain("Dockerfile", harmless) + member(sealed(block), evil) + end()


def checksum_after_nul(harmless: bytes, evil: bytes) -> bytes:
    """The evil member's checksum field starts with a NUL: Python's reader takes the header
    as the archive's end (silently, after a first member), Go trims the NUL and reads it."""
    block = header("Dockerfile", evil)
    block[148:156] = b" " * 8
    block[148:156] = b"\x00%06o " % sum(block)
    return plain("Dockerfile", harmless) + member(block, evil) + end()


def prefix_on_v7(harmless: bytes, evil: bytes) -> bytes:
    """A header without ustar magic but with a prefix: Python reads zzz/Dockerfile, Go (V7)
    ignores the prefix and reads Dockerfile."""
    block = header("Dockerfile", evil)
    block[257:265] = b"\x00" * 8
    block[345:348] = b"zzz"
    return plain("Dockerfile", harmless) + member(sealed(block), evil) + end()


def global_pax_path(harmless: bytes, evil: bytes) -> bytes:
    """A global pax header (g) with a path: Python renames every later member to it, Go and
    docker ignore global headers."""
    return (plain("Dockerfile", harmless) + extended(b"g", pax_record("path", "zzz"))
            + plain("Dockerfile", evil) + end())


def two_long_names(harmless: bytes, evil: bytes) -> bytes:
    """Two GNU long names before one member: Python keeps the first, Go the last."""
    return (plain("Dockerfile", harmless) + extended(b"L", b"zzz\x00")
            + extended(b"L", b"Dockerfile\x00") + plain("x", evil) + end())


def pax_then_long_name(harmless: bytes, evil: bytes) -> bytes:
    """A pax path, then a GNU long name: Python lets pax win, Go the GNU name."""
    return (plain("Dockerfile", harmless) + extended(b"x", pax_record("path", "zzz"))
            + extended(b"L", b"Dockerfile\x00") + plain("x", evil) + end())


SHAPES: dict[str, Callable[[bytes, bytes], bytes]] = {
    "duplicate": duplicate,
    "through_symlink": through_symlink,
    "through_absolute_symlink": through_absolute_symlink,
    "lowercase_only": lowercase_only,
    "size_after_nul": size_after_nul,
    "checksum_after_nul": checksum_after_nul,
    "prefix_on_v7": prefix_on_v7,
    "global_pax_path": global_pax_path,
    "two_long_names": two_long_names,
    "pax_then_long_name": pax_then_long_name,
}


def naive_dockerfile(archive: bytes) -> bytes:
    """What a plain reading finds (the defence off): Python's tarfile, the first member named
    Dockerfile, Dockerfile.txt standing for a context without one."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as opened:
        for info in opened.getmembers():
            if info.name.lstrip("./") in ("Dockerfile", "Dockerfile.txt") and info.isfile():
                handle = opened.extractfile(info)
                return handle.read() if handle else b""
    return b""
