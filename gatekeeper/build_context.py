"""A build context archive read as the engine unpacks it, for the Dockerfile the builder reads.

Both layers check the Dockerfile inside a context archive before the engine sees it: the proxy
in what `docker build` sends (layouts a and b), the CLI layer in `docker build - < ctx.tar`.
The engine reads the archive with Go's archive/tar and unpacks it member by member into a
directory (later members replace earlier ones, and are written THROUGH symlinks earlier members
made: `a -> .` then `a/Dockerfile` replaces `./Dockerfile`), then reads `Dockerfile` (or
`dockerfile` when there is none) from there. So the Dockerfile checked must be the one that
directory ends up with, and every tar header must read the same in Python's tarfile as in
Go's: where they part (a field Python cuts at a leading NUL and Go trims, a ustar prefix on a
header Go reads as V7, a global pax header Go ignores, two extended headers for one member,
a header Python takes as the archive's end) the archive is refused, since one reader would see
a harmless Dockerfile and the other the one built.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import IO, Any

from gatekeeper.errors import Denied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Self

RULE = "build-add-url"  # what the Dockerfile check guards first: ADD <url> fetched by the engine
LIMIT = 1 << 20  # a Dockerfile read at most (gatekeeper.vetting.images DOCKERFILE_LIMIT is this)
BLOCK = tarfile.BLOCKSIZE
LINK_HOPS = 40  # the kernel's own symlink limit in a path walk (ELOOP)

# Member types both readers take alike: regular files (0, NUL), hard and symbolic links, devices,
# directories, FIFOs, a pax extended header for the next member, GNU long name and long link.
# Refused: g (a global pax header: Python applies it to every later member, Go and docker ignore
# it), X (Solaris: Python reads it as pax, Go as a file), 7, S (sparse) and anything unknown.
TYPES = frozenset(bytes([kind]) for kind in b"0\x00123456xLK")
EXTENDED = frozenset((b"x", b"L", b"K"))
NUMBER_FIELDS = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156),
                 (329, 337), (337, 345))  # mode uid gid size mtime chksum devmajor devminor


class Ambiguous(tarfile.TarError):
    """A tar header Python's and Go's readers could read differently."""


def cut(field: bytes) -> bytes:
    """A string field as both readers take it: up to its first NUL."""
    return field.split(b"\x00", 1)[0]


def octal_alike(field: bytes) -> bool:
    """Whether Python (cut at the first NUL, then strip) and Go (trim spaces and NULs at both
    ends) read this number field alike: spaces, octal digits, then spaces or NULs, or base-256."""
    if field[:1] in (b"\x80", b"\xff"):
        return True
    body = field.lstrip(b" ").rstrip(b" \x00")
    return all(48 <= byte <= 55 for byte in body)


def go_prefix(block: bytes) -> bytes:
    """The ustar prefix Go prepends to the name: only for ustar (and star) magic."""
    if block[257:263] != b"ustar\x00":
        return b""  # V7 or GNU: Go ignores bytes 345-500 (GNU keeps times there)
    return cut(block[345:476] if block[508:512] == b"tar\x00" else block[345:500])


def python_prefix(block: bytes) -> bytes:
    """The prefix Python's tarfile prepends, whatever the magic says (gnu types aside)."""
    return b"" if block[156:157] in (b"L", b"K", b"S") else cut(block[345:500])


def check_header(block: bytes) -> None:
    """Refuse a header the two readers take differently (a zero block is the end for both)."""
    if len(block) != tarfile.BLOCKSIZE or not block.strip(b"\x00"):
        return
    kind = block[156:157]
    if kind not in TYPES:
        raise Ambiguous(f"member type {kind!r}")
    for start, end in NUMBER_FIELDS:
        if not octal_alike(block[start:end]):
            raise Ambiguous(f"number field at byte {start}")
    if go_prefix(block) != python_prefix(block):
        raise Ambiguous("name prefix")


def go_reads_header(block: bytes) -> bool:
    """Whether Go's archive/tar takes this first block as a header (its checksum, read as Go
    reads it, matches): what the docker CLI asks to tell a context archive from a Dockerfile."""
    if len(block) < tarfile.BLOCKSIZE or not block.strip(b"\x00"):
        return False
    field = cut(block[148:156].strip(b" \x00"))
    if not field or not all(48 <= byte <= 55 for byte in field):
        return False
    unsigned = 256 + sum(block[:148]) + sum(block[156:512])
    signed = 256 + sum(byte - 256 * (byte > 127) for byte in block[:148] + block[156:512])
    return int(field, 8) in (unsigned, signed)


class StrictTarInfo(tarfile.TarInfo):
    """tarfile's member, read only where Go's archive/tar reads the same."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        check_header(bytes(buf))
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as error:
            if type(error).__name__ != "InvalidHeaderError":
                raise  # (a zero block: the end for Go too; a short one: an error for Go)
            # Stops: Python ends the listing at a header it cannot read; Go may read it.
            raise Ambiguous(f"a header only one reader takes ({error})") from None

    @classmethod
    def fromtarfile(cls, tarfile: Any) -> Self:  # (tarfile's own name for the archive)
        """One member with its extended headers: at most one of each kind, never pax with GNU
        (of two, Python lets the first win and pax over GNU; Go the last and GNU over pax)."""
        archive = tarfile
        seen: frozenset[bytes] = getattr(archive, "gk_extended", frozenset())
        outermost = not seen
        block = archive.fileobj.read(BLOCK)
        kind = block[156:157]
        if kind in EXTENDED:
            if kind in seen or (seen and (b"x" in seen) != (kind == b"x")):
                raise Ambiguous("more than one extended header for one member")
            seen = seen | {kind}
        archive.gk_extended = seen
        try:
            member = cls.frombuf(block, archive.encoding, archive.errors)
            member.offset = archive.fileobj.tell() - BLOCK
            untyped: Any = member  # (_proc_member: tarfile's own step, not in its stubs)
            processed: Self = untyped._proc_member(archive)
            return processed
        finally:
            if outermost:
                archive.gk_extended = frozenset()


def members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The archive's members, in order. The docker CLI's `build -f -` context (its Dockerfile
    added from stdin) ends inside its last member, with no end-of-archive blocks, and the
    engine takes it: a stream that ends there ends the listing. Nothing follows that the
    engine could read either; a Dockerfile whose own data is cut short is refused when read."""
    while True:
        try:
            member = archive.next()
        except tarfile.ReadError as error:
            if str(error) != "unexpected end of data" or archive.offset == 0:
                raise
            return
        if member is None:
            return
        yield member


def context_name(name: str) -> str:
    """A path in the build context as the engine cleans it (lexically, scoped to the root)."""
    import posixpath

    return posixpath.normpath("/" + name).lstrip("/")


class Unpacked:
    """What the engine's unpacking leaves: path -> the member last written there, each member
    placed where its parent directory resolves through the symlinks written before it."""

    __slots__ = ("entries", "links")

    def __init__(self) -> None:
        self.entries: dict[str, tarfile.TarInfo] = {}
        self.links = False

    def resolve(self, path: str) -> str:
        """A directory path through the symlinks so far, inside the root (as in the engine's chroot)."""
        if not self.links:
            return path
        pending = [part for part in path.split("/") if part]
        done: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in (".", ""):
                continue
            if part == "..":
                done = done[:-1]
                continue
            member = self.entries.get("/".join([*done, part]))
            if member is not None and member.issym():
                hops += 1
                if hops > LINK_HOPS:
                    raise Ambiguous("a symlink loop")
                if member.linkname.startswith("/"):
                    done = []
                pending[:0] = member.linkname.split("/")
                continue
            done.append(part)
        return "/".join(done)

    def place(self, member: tarfile.TarInfo) -> None:
        name = context_name(member.name)
        if not name or name == ".":
            return
        parent, _, base = name.rpartition("/")
        real = f"{self.resolve(parent)}/{base}".lstrip("/")
        existing = self.entries.get(real)
        if existing is not None and existing.isdir():
            if member.isdir():
                return  # a directory over a directory is merged
            for path in [path for path in self.entries if path.startswith(real + "/")]:
                del self.entries[path]
        self.entries[real] = member
        self.links = self.links or member.issym()


def dockerfile_text(source: IO[bytes], name: str) -> str:
    """The Dockerfile `name` the engine builds from this context archive (plain, gzip, bzip2 or
    xz), with its fallback from `Dockerfile` to `dockerfile`. Refused (fail closed): no such
    regular file, a link on its path, more than the limit, an archive Python cannot read or
    could read otherwise than Go."""
    wanted = context_name(name)
    candidates = [wanted, wanted.lower()] if wanted == "Dockerfile" else [wanted]  # the engine's fallback
    unpacked = Unpacked()
    try:
        source.seek(0)
        with tarfile.open(fileobj=source, mode="r:*", tarinfo=StrictTarInfo) as archive:
            for member in members(archive):
                unpacked.place(member)
            dockerfile = chosen(unpacked, candidates, name)
            data = archive.extractfile(dockerfile)
            text = data.read(LIMIT + 1) if data is not None else b""
    except Ambiguous as error:
        raise Denied(f"the build context has a tar header docker could read otherwise than gatekeeper "
                     f"({error}); send a plain tar as `tar` or `docker build` writes it", rule=RULE) from None
    except (tarfile.TarError, EOFError, OSError, ValueError):
        raise Denied("the build context is not a tar archive gatekeeper can read (plain, gzip, "
                     "bzip2 or xz)", rule=RULE) from None
    finally:
        source.seek(0)
    return text.decode("utf-8", errors="replace")


def chosen(unpacked: Unpacked, candidates: list[str], name: str) -> tarfile.TarInfo:
    """The member the engine opens as the Dockerfile: a regular file, no link on its path."""
    for candidate in candidates:
        parts = candidate.split("/")
        for depth in range(1, len(parts) + 1):
            member = unpacked.entries.get("/".join(parts[:depth]))
            if member is not None and not (member.isreg() or member.isdir()):
                # Stops: a Dockerfile (or a directory on its path) that points elsewhere.
                raise Denied(f"the Dockerfile {name[:80]!r} is a link in the build context; "
                             "send the file itself", rule=RULE)
    for candidate in candidates:
        member = unpacked.entries.get(candidate)
        if member is not None:
            if not member.isreg():
                break
            if member.size > LIMIT:
                raise Denied(f"Dockerfile {name[:80]!r} is larger than {LIMIT} bytes", rule=RULE)
            return member
    raise Denied(f"the build context has no Dockerfile {name[:80]!r} gatekeeper can check; "
                 "send it in the context", rule=RULE)
