"""The audit log writer: one JSON object per line, one write(2) per record,
on a descriptor opened O_APPEND|O_NOFOLLOW after checking it is a regular file.

O_APPEND makes every write land at the end, and Linux serialises writes to a
regular file, so concurrent sessions never interleave or overwrite records.
A record that cannot be written whole is an error: the caller refuses to run
the command rather than run it unrecorded.

Tamper evidence: where the writer can read the log (the proxy, as root, in the
deployment; any writer opened read-write), each record carries `seq` (one more than
the previous record's) and `prev` (the SHA-256 of the previous line, "" for the first
line of a file): a hash chain per file. The tail is read and the record written under
flock(LOCK_EX) on the log, so concurrent writers chain one after another.
`gatekeeper audit verify` (gatekeeper.audit_chain) finds a removed, edited or
reordered record; with [audit] syslog every record, seq and prev included, also goes
to syslog, where a truncated file's lost head can still be found.
"""

from __future__ import annotations

import posix  # os's system calls without importing os (gatekeeper.environment)
import time

from gatekeeper.errors import AuditError, AuditFull

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # called under the log's lock with its (st_dev, st_ino), its size and the line's size
    Charge = Callable[[tuple[int, int], int, int], None]

RECORD_VERSION = 1


def open_log(path: str) -> int:
    """An append-only descriptor on an existing regular file (never created here); read-write
    where permitted (the chain needs the last line), else write-only (no chain)."""
    flags = posix.O_APPEND | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NOCTTY | posix.O_NONBLOCK
    try:
        fd = posix.open(path, flags | posix.O_RDWR)
    except PermissionError:
        fd = -1
    except OSError as error:
        raise AuditError(f"cannot open audit log {path}: {error.strerror}") from None
    try:
        fd = fd if fd >= 0 else posix.open(path, flags | posix.O_WRONLY)
    except OSError as error:
        raise AuditError(f"cannot open audit log {path}: {error.strerror}") from None
    if not is_regular_file(fd):
        posix.close(fd)
        raise AuditError(f"audit log {path} is not a regular file")
    return fd


def reopen_log(path: str, fallback: int) -> int:
    """A fresh descriptor on the live log for a record written later (the exit
    line): a command can outlive a rotation, or two, and the descriptor opened
    at the start then points at a rotated copy, compressed and unlinked by the
    second rotation, where the line would be lost. If the path cannot be opened
    (the rename-to-create gap of a rotation), the old descriptor still takes it."""
    try:
        return open_log(path)
    except AuditError:
        return fallback


def is_regular_file(fd: int) -> bool:
    return posix.fstat(fd).st_mode & 0o170000 == 0o100000  # stat.S_ISREG (importing stat: ~0.07 ms)


class LogBusy(Exception):
    """Another writer holds the log's lock and the caller asked not to wait (`wait=False`)."""


def append_record(path: str, record: dict[str, object], *, wait: bool = True,
                  encoder: Callable[[object], str] | None = None, ceiling: int = 0,
                  charge: Charge | None = None) -> str:
    """One record on a descriptor opened for it and closed after (a rotation in between is
    followed: long-lived writers such as the proxy never write into an old file).
    With wait=False a lock held by another writer raises LogBusy, nothing written."""
    fd = open_log(path)
    try:
        return write_record(fd, record, wait=wait, encoder=encoder, ceiling=ceiling, charge=charge)
    finally:
        posix.close(fd)


def write_record(fd: int, record: dict[str, object], *, wait: bool = True,
                 encoder: Callable[[object], str] | None = None, ceiling: int = 0,
                 charge: Charge | None = None) -> str:
    """Append `record` as one line with a single write; return the line. On a readable
    descriptor the record is chained to the last line (seq, prev) under flock. `encoder`:
    one that gives encode's bytes (the proxy's, gatekeeper.json_codec.record_line: C, not
    worth its import on the ForceCommand path). `ceiling` ([audit] max_bytes, the proxy's
    writes): AuditFull, nothing written, if the line would take the file past it. `charge` (the
    proxy's per-uid share, gatekeeper.proxy.log_shares): called under the lock with the file's
    (st_dev, st_ino), its size and the line's size; what it raises refuses the record, nothing
    written. One fstat under the lock serves the tail, the ceiling and the charge."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LogBusy from None
    except OSError as error:
        raise AuditError(f"cannot lock audit log: {error.strerror}") from None
    try:
        stat = posix.fstat(fd)
        last = last_line(fd, stat.st_size)
        if last is not None:
            record = {**record, "seq": next_seq(last), "prev": line_hash(last) if last else ""}
        line = (encoder or encode)(record)
        data = (line + "\n").encode("utf-8", "surrogateescape")
        if ceiling:
            check_ceiling(stat.st_size, len(data), ceiling)
        if charge is not None:
            charge((stat.st_dev, stat.st_ino), stat.st_size, len(data))
        try:
            written = posix.write(fd, data)
        except OSError as error:
            raise AuditError(f"cannot write audit log: {error.strerror}") from None
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
    if written != len(data):
        raise AuditError("audit log write was cut short (disk full?)")
    return line


def check_ceiling(end: int, size: int, ceiling: int) -> None:
    """AuditFull if `size` more bytes would take the log, `end` bytes long (read under its
    lock), past `ceiling`."""
    # Stops: a flood of requests (each a record) filling the log's file system, and with it
    # whatever else lives there; refusing is the fail-closed end of it.
    if end + size > ceiling:
        raise AuditFull(f"the audit log is full ([audit] max_bytes = {ceiling}); nothing runs until the "
                        "operator rotates it (logrotate -f /etc/logrotate.d/gatekeeper)")


TAIL_LIMIT = 8 << 20  # bytes read back to find the last line
TAIL_FIRST = 4 << 10  # the first read back; each next one reads four times as much


def last_line(fd: int, size: int) -> bytes | None:
    """The last whole line of the file, `size` bytes long (b"" for an empty file), or None when
    the descriptor is write-only."""
    chunk = TAIL_FIRST  # a record is about 500 bytes: most tails need one small read
    while True:
        start = max(0, size - chunk)
        try:
            tail = posix.pread(fd, size - start, start)
        except OSError:
            return None  # opened write-only: no chain
        body = tail[:-1] if tail.endswith(b"\n") else tail
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0 or chunk >= TAIL_LIMIT:
            return body[cut + 1:]
        chunk *= 4


def line_hash(line: bytes) -> str:
    from gatekeeper.digest import sha256_hex

    return sha256_hex(line)


def next_seq(last: bytes) -> int:
    """One more than the last record's seq (0 for the first record, or after an unchained one)."""
    at = last.rfind(b',"seq":')
    if at < 0:
        return 0 if not last else 1
    digits = last[at + 7:].split(b",", 1)[0].split(b"}", 1)[0]
    return int(digits) + 1 if digits.isdigit() else 1


def encode(value: object) -> str:
    """Compact, ASCII-only JSON: control characters and invalid UTF-8 become escapes.

    Exactly `json.dumps(value, ensure_ascii=True, separators=(",", ":"))` for the
    types a record holds (a property test checks it), without importing json,
    which would pull in re: milliseconds on every SSH command.
    """
    if isinstance(value, str):
        return encode_string(value)
    if value is None or isinstance(value, bool):
        return JSON_CONSTANTS[value]
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join([encode(item) for item in value]) + "]"
    if isinstance(value, dict):
        return "{" + ",".join([encode_key(key) + ":" + encode(item) for key, item in value.items()]) + "}"
    raise TypeError(f"an audit record cannot hold {type(value).__name__}")


JSON_CONSTANTS = {None: "null", True: "true", False: "false"}

# Printable ASCII stands for itself except these; every other character is \uXXXX.
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                 "\b": "\\b", "\f": "\\f"}  # fmt: skip


def encode_string(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return '"' + "".join([escape_character(char) for char in text]) + '"'


def escape_character(char: str) -> str:
    short = SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    if " " <= char <= "~":
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP: a UTF-16 surrogate pair, as JSON requires
    return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"


def encode_float(value: float) -> str:
    if value != value:  # noqa: PLR0124 - NaN, the one float unequal to itself (math costs an import)
        return "NaN"
    if value in (INFINITY, -INFINITY):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


INFINITY = float("inf")


def encode_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"audit record keys are strings, not {type(key).__name__}")
    return encode_string(key)


# A command over the words' limit (always refused, rule shell-syntax) is recorded as its first
# RECORDED_HEAD characters and TRUNCATED: whole, the record could be larger than the proxy's
# intake takes (sshd passes ~256 KiB), and the decision would go unrecorded. The NUL keeps the
# recorded command refused by the same rule when it is decided again (replay, suggest, check).
RECORDED_HEAD = 1024
TRUNCATED = "\x00[truncated]"


def command_fields(command: str) -> dict[str, str | int]:
    """The command for the record: ``cmd``, plus ``cmd_b64`` when it is not UTF-8.

    sshd hands over bytes; Python keeps undecodable ones as lone surrogates,
    which JSON tools turn into U+FFFD. Then ``cmd`` shows each such byte as the
    four characters ``\\xFF`` and ``cmd_b64`` holds the exact bytes (base64).
    A command too long to record whole gets its head, ``cmd_length`` (bytes) and
    ``cmd_sha256`` of the whole.
    """
    from gatekeeper.words import MAX_COMMAND_LENGTH, recorded_length

    if len(command) > MAX_COMMAND_LENGTH or (
        not command.isascii() and recorded_length(command) > MAX_COMMAND_LENGTH
    ):
        import hashlib

        raw = command.encode("utf-8", "surrogateescape")
        fields: dict[str, str | int] = dict(exact_command_fields(command[:RECORDED_HEAD] + TRUNCATED))
        fields.update(cmd_length=len(raw), cmd_sha256=hashlib.sha256(raw).hexdigest())
        return fields
    return dict(exact_command_fields(command))


def exact_command_fields(command: str) -> dict[str, str]:
    if command.isascii():
        return {"cmd": command}
    try:
        command.encode("utf-8")
    except UnicodeEncodeError:
        import binascii  # built in

        raw = command.encode("utf-8", "surrogateescape")
        return {
            "cmd": raw.decode("utf-8", "backslashreplace"),
            "cmd_b64": binascii.b2a_base64(raw, newline=False).decode("ascii"),
        }
    return {"cmd": command}


def command_bytes(record: dict[str, object]) -> str | None:
    """The exact command of a record as Python keeps it (surrogate escapes), or None."""
    encoded = record.get("cmd_b64")
    if type(encoded) is not str:
        command = record.get("cmd")
        return command if type(command) is str else None
    import binascii

    try:
        return binascii.a2b_base64(encoded).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None


def timestamp(now: float | None = None) -> str:
    """UTC RFC 3339 with microseconds, without importing datetime."""
    now = time.time() if now is None else now
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def to_syslog(line: str) -> None:
    """Best-effort copy to syslog (authpriv); the JSON is already escaped."""
    import syslog

    syslog.openlog("gatekeeper", syslog.LOG_PID, syslog.LOG_AUTHPRIV)
    syslog.syslog(syslog.LOG_INFO, line)
