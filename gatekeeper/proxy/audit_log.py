"""The proxy's audit log on its event loop: one descriptor kept open while the log's path
still names the file it was opened on, and the last line it wrote kept for the hash chain.

gatekeeper.audit.append_record opens the log, checks it, reads its tail back, writes and
closes, for every record: nine system calls and the code around them, twice for a
`docker ps` (its ping and its list) and once per record the ForceCommand hands over.
The proxy wakes for each request after the CLI and the engine ran on its CPUs, so all
of that runs with cold caches. Here a record costs lstat (the path still names our
file: a rotation or a replaced log is followed), flock, lseek (the file's size: the descriptor's
device and inode are known, no stat to build), write, unlock; the tail is
read back only when the file's size is not the one our last write left (another writer
appended meanwhile, or the file was truncated). What the next record needs of our last line
(its seq plus one, its hash for `prev`) is kept with that size, worked out as the line is
written (still in the CPU's cache) instead of parsed and hashed again at the next request.
Records are the same bytes as append_record's (seq, prev, ceiling, one write under flock).

Only the event loop's thread (`owner`, set by the proxy's first connection) uses the kept
descriptor: flock does not exclude two threads sharing one open file, so a record written
from a worker thread takes append_record's own descriptor, which flock orders against this one.

The tail is keyed by the file (the kept descriptor's device and inode) and its size: every
writer appends under flock (the size only grows) and the live log is append-only (chattr +a:
no truncation, no overwrite); a rotation renames it, and the new file is opened anew (its tail
read back); a shorter file (truncated) has its tail read back. A file rewritten behind our back
to the same size keeps our line's hash as the next `prev`: the proxy's memory of what it wrote,
so `gatekeeper audit verify` shows the break where reading the forgery back would hide it.
"""

from __future__ import annotations

import fcntl
import posix
import threading

from gatekeeper.audit import (
    LogBusy,
    append_record,
    check_ceiling,
    encode,
    last_line,
    line_hash,
    next_seq,
    open_log,
)
from gatekeeper.errors import AuditError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from gatekeeper.audit import Charge


def sha256_constructor() -> Callable[[bytes], Any]:
    """The SHA-256 gatekeeper.digest uses (CPython's own module, else hashlib's), found once:
    gatekeeper.audit.line_hash looks it up on every call."""
    import sys

    try:
        if sys.version_info >= (3, 12):
            from _sha2 import sha256  # type: ignore[import-not-found]  # CPython's C module, no stub
        else:
            from _sha256 import sha256  # type: ignore[import-not-found]  # CPython's C module, no stub
    except ImportError:  # an interpreter built without them
        from hashlib import sha256
    return sha256  # type: ignore[no-any-return]  # untyped without stubs


SHA256 = sha256_constructor()
SEEK_END = 2  # os.SEEK_END (posix does not name it)


class KeptLog:
    """The log's descriptor (`fd`, on `path`, identified by device and inode) and the size
    our last write left in it, with the chain's next seq and the hash of the line written."""

    __slots__ = ("owner", "path", "fd", "ident", "tail")

    def __init__(self) -> None:
        self.owner: int | None = None  # the thread that may use the kept descriptor
        self.path = ""
        self.fd = -1
        self.ident = (0, 0)
        self.tail: tuple[int, int, str] | None = None  # (file size after our write, next seq, line's hash)

    def append(self, path: str, record: dict[str, object], *, wait: bool = True,
               encoder: Callable[[object], str] | None = None, ceiling: int = 0,
               charge: Charge | None = None) -> str:
        """As gatekeeper.audit.append_record (same line, same errors)."""
        if threading.get_ident() != self.owner:
            return append_record(path, record, wait=wait, encoder=encoder, ceiling=ceiling, charge=charge)
        fd = self.descriptor(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LogBusy from None
        except OSError as error:
            self.close()
            raise AuditError(f"cannot lock audit log: {error.strerror}") from None
        try:
            return self.write(fd, record, encoder, ceiling, charge)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def write(self, fd: int, record: dict[str, object], encoder: Callable[[object], str] | None,
              ceiling: int, charge: Charge | None) -> str:
        """Under the lock: chain, check the ceiling and the uid's share, write once
        (gatekeeper.audit.write_record)."""
        size = posix.lseek(fd, 0, SEEK_END)  # the file's size under the lock (fstat's, without a stat)
        tail, self.tail = self.tail, None
        chained, seq, prev = True, 0, ""
        if tail is not None and tail[0] == size:
            seq, prev = tail[1], tail[2]
        elif (last := last_line(fd, size)) is not None:
            seq, prev = next_seq(last), line_hash(last) if last else ""
        else:
            chained = False  # a write-only descriptor: no chain
        # (next_seq of our own line is seq + 1 when our seq is the line's last top-level
        # "seq": the record came without one, so the key is added after all of its own)
        plain = chained and bool(record) and "seq" not in record and "prev" not in record
        if chained:
            record = {**record, "seq": seq, "prev": prev}
        line = (encoder or encode)(record)
        data = (line + "\n").encode("utf-8", "surrogateescape")
        if ceiling:
            check_ceiling(size, len(data), ceiling)  # AuditFull, nothing written
        if charge is not None:
            charge(self.ident, size, len(data))  # (proxy.log_shares) what it raises: nothing written
        try:
            written = posix.write(fd, data)
        except OSError as error:
            raise AuditError(f"cannot write audit log: {error.strerror}") from None
        if written != len(data):
            raise AuditError("audit log write was cut short (disk full?)")
        if chained:  # (a write-only descriptor has no chain to keep)
            kept = data[:-1]
            self.tail = (size + written, seq + 1 if plain else next_seq(kept), SHA256(kept).hexdigest())
        return line

    def descriptor(self, path: str) -> int:
        """The kept descriptor while `path` names its file, else the log opened anew
        (gatekeeper.audit.open_log: O_NOFOLLOW, a regular file, or AuditError)."""
        try:
            now = posix.lstat(path)
            same = self.fd >= 0 and path == self.path and (now.st_dev, now.st_ino) == self.ident
        except OSError:
            same = False
        if same:
            return self.fd
        self.close()
        fd = open_log(path)
        opened = posix.fstat(fd)
        self.path, self.fd, self.ident = path, fd, (opened.st_dev, opened.st_ino)
        return fd

    def claim(self) -> None:
        """Called on the event loop: from now on its records use the kept descriptor."""
        if self.owner is None:
            self.owner = threading.get_ident()

    def close(self) -> None:
        fd, self.fd, self.tail = self.fd, -1, None
        if fd >= 0:
            posix.close(fd)
