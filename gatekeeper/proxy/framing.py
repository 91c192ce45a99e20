"""What a request must look like before the proxy reads its body, decides on it
or forwards a byte of it.

httptools (llhttp, strict) parses, in gatekeeper.proxy.request_reader; these checks refuse
what a parser may tolerate but two HTTP parsers could read differently (the engine's Go
parser and ours): a request smuggled past the decision hides in exactly that gap. Each
check names the trick it stops. Everything here is pure: bytes and parsed heads in, a
FramingError (HTTP status, rule, message) out.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote_to_bytes

RULE_FRAMING = "api-framing"
RULE_BODY_SIZE = "api-body-size"
RULE_CONTENT_TYPE = "api-content-type"

# Headers that describe one hop, never forwarded as received (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"proxy-authenticate",
    b"te", b"trailer", b"transfer-encoding", b"upgrade", b"content-length", b"host", b"expect",
})  # fmt: skip

# One of each at most: a second copy is read as the first by one parser, the last by another.
SINGLE_HEADERS = (b"content-length", b"transfer-encoding", b"host", b"connection", b"upgrade",
                  b"expect", b"content-type")
SINGLE_SET = frozenset(SINGLE_HEADERS)
CONNECTION_TOKENS = frozenset({"close", "keep-alive", "upgrade"})
UPGRADE_PROTOCOLS = frozenset({"tcp", "h2c"})  # attach/exec hijack; buildkit's /session and /grpc
# Media types a request body may say it is: what docker's clients send (JSON bodies, build
# contexts, text/plain on a POST without a body). Never a form: the engine reads query
# parameters with Go's Request.FormValue/ParseForm, which take a form body's pairs first
# (dockerd 20.10 pulls the `fromImage` of a form body sent to POST /images/create).
CONTENT_TYPES = frozenset({"application/json", "application/x-tar", "application/tar", "text/plain",
                           "application/octet-stream"})
VERSION_PREFIX = re.compile(r"/v([0-9]+\.[0-9]+)(/.*)")
PERCENT_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CHUNKED_PATHS = frozenset({"/build"})  # the legacy builder's context (docker build) comes chunked


class FramingError(Exception):
    """A request refused before it is decided on; the connection is closed after the answer."""

    def __init__(self, status: int, message: str, rule: str = RULE_FRAMING) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.rule = rule


class RequestHead:
    """A request's head as parsed: method and target as sent, header names lowercased,
    values without surrounding blanks, in the order received; `fields`, the values by name
    (the checks below ask for a few names, each several times per request)."""

    __slots__ = ("method", "target", "headers", "http_version", "fields")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                 http_version: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.fields: dict[bytes, list[str]] = {}
        for name, value in headers:
            self.fields.setdefault(name, []).append(value.decode("latin-1"))


class Target:
    """The request-target split and decoded the way the decision reads it."""

    __slots__ = ("path", "version", "query")

    def __init__(self, path: str, version: str | None, query: dict[str, list[str]]) -> None:
        self.path = path
        self.version = version
        self.query = query


# ---------------------------------------------------------------- the head as sent


def check_raw_head(head: bytes) -> None:
    """Line endings and folding: parsers differ on bare LF and obs-fold (h11 accepted both, Go
    does not or reads them differently), so a header hidden in a folded line could reach the
    engine undecided. llhttp, strict, refuses them too: this check does not depend on it."""
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n"):
        raise FramingError(400, "malformed request: line endings other than CRLF")
    if b"\r\n " in head or b"\r\n\t" in head:
        raise FramingError(400, "malformed request: folded header line (obs-fold)")
    seen: set[bytes] = set()
    twice: set[bytes] = set()
    lengths: list[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in SINGLE_SET:
            (twice if name in seen else seen).add(name)
            if name == b"content-length":
                lengths.append(value)
    for name in SINGLE_HEADERS:  # (the first of them in this order is named)
        if name in twice:
            raise FramingError(400, f"ambiguous request: more than one {name.decode()} header")
    if any(not value.strip().isdigit() for value in lengths):
        raise FramingError(400, "malformed request: Content-Length is not one number")


def header_values(request: RequestHead, name: bytes) -> list[str]:
    return request.fields.get(name, [])


def check_head(request: RequestHead, path: str) -> None:
    """Version, framing and hop headers of a parsed request (after check_raw_head)."""
    if request.http_version != b"1.1":
        raise FramingError(505, "only HTTP/1.1 is served here")
    fields = request.fields  # (each name looked up once: a request has only the fields it sent)
    lengths = fields.get(b"content-length")
    codings = fields.get(b"transfer-encoding")
    if lengths and codings:
        # Stops CL.TE/TE.CL smuggling: the two headers frame the body two ways.
        raise FramingError(400, "ambiguous request: both Content-Length and Transfer-Encoding")
    if codings and (path not in CHUNKED_PATHS or request.method != b"POST"):
        raise FramingError(411, "chunked request bodies are refused; send a Content-Length")
    check_connection(request)
    check_content_type(request)
    expect = fields.get(b"expect")
    if expect and expect[0].lower() != "100-continue":
        raise FramingError(417, "unsupported Expect header")


def check_content_type(request: RequestHead) -> None:
    """Content-Type names one of CONTENT_TYPES (parameters aside), or is absent."""
    for value in request.fields.get(b"content-type", ()):
        media = value.partition(";")[0].strip().lower()
        if media not in CONTENT_TYPES or not value.isascii():
            # Stops: query parameters in a form body (application/x-www-form-urlencoded or
            # multipart/form-data), which the engine reads before the query the decision vetted.
            # A second wall: bodies reach only endpoints whose body the vetter reads (JSON, whose
            # endpoints the engine refuses under another media type) and /build (its tar).
            raise FramingError(415, f"request Content-Type {value[:60]!r} is not allowed: send "
                               "application/json, application/x-tar or text/plain (what the docker "
                               "CLI sends), never a form", RULE_CONTENT_TYPE)


def check_connection(request: RequestHead) -> None:
    """Connection may only say close, keep-alive or upgrade (other tokens name headers to drop,
    which would let a client strip what the decision saw); Upgrade only with its token."""
    tokens = {token.strip().lower() for value in request.fields.get(b"connection", ())
              for token in value.split(",") if token.strip()}
    if not tokens <= CONNECTION_TOKENS:
        raise FramingError(400, "unsupported Connection header tokens")
    upgrade = request.fields.get(b"upgrade")
    if ("upgrade" in tokens) != bool(upgrade):
        raise FramingError(400, "ambiguous request: Upgrade without Connection: upgrade (or the reverse)")
    if upgrade and upgrade[0].lower() not in UPGRADE_PROTOCOLS:
        raise FramingError(400, f"unsupported upgrade protocol {upgrade[0]!r}")


def is_upgrade(request: RequestHead) -> bool:
    return b"upgrade" in request.fields


def wants_close(request: RequestHead) -> bool:
    connection = request.fields.get(b"connection")
    return connection is not None and any("close" in value.lower() for value in connection)


def is_chunked(request: RequestHead) -> bool:
    return b"transfer-encoding" in request.fields


def body_length(request: RequestHead) -> int | None:
    """Content-Length, or None for a chunked body (only CHUNKED_PATHS get this far)."""
    fields = request.fields
    if b"transfer-encoding" in fields:
        return None
    lengths = fields.get(b"content-length")
    return int(lengths[0]) if lengths else 0


# Endpoints that answer one JSON document, never a stream: their requests (GET and HEAD)
# go over pooled keep-alive connections to the engine.
SMALL_ANSWERS = frozenset({"/_ping", "/version", "/info", "/system/df", "/containers/json", "/images/json",
                           "/volumes", "/networks"})


def small_answer(method: bytes, path: str) -> bool:
    if method not in (b"GET", b"HEAD"):
        return False
    if path in SMALL_ANSWERS:
        return True
    segments = path.split("/")
    if segments[1:2] in (["containers"], ["images"]):
        return path.endswith("/json")  # inspect: /containers/ID/json, /images/NAME/json
    return segments[1:2] in (["volumes"], ["networks"]) and len(segments) == 3


def check_body_size(length: int | None, cap: int) -> None:
    if length is not None and length > cap:
        raise FramingError(413, f"request body of {length} bytes is over the cap of {cap}", RULE_BODY_SIZE)


# ---------------------------------------------------------------- the target


def split_target(raw: bytes) -> Target:
    """Origin-form only; a path the engine's router cannot read as another path."""
    if not raw.startswith(b"/"):
        # absolute-form (http://host/...), authority-form, asterisk-form: the engine would
        # route on the path inside, the decision on something else.
        raise FramingError(400, "request target must be a path (origin-form)")
    text = raw.decode("ascii")  # the reader admits only visible ASCII here
    if "#" in text or "\\" in text:
        raise FramingError(400, "request target with a fragment or backslash")
    raw_path, _, raw_query = text.partition("?")
    path = decoded_path(raw_path)
    version = None
    match = VERSION_PREFIX.fullmatch(path)
    if match:
        version, path = match.group(1), match.group(2)
    return Target(path, version, decoded_query(raw_query))


def decoded_path(raw_path: str) -> str:
    """The path percent-decoded; refused if decoding could change which segments it has:
    Go's router cleans '//', '.' and '..' (a redirect, or another endpoint), and an
    escaped '/' is one segment to one reader and two to another."""
    path = raw_path
    if "%" in raw_path:  # (without one, decoding changes nothing)
        lowered = raw_path.lower()
        escaped = "%2f" in lowered or "%5c" in lowered or "%00" in lowered
        if escaped or PERCENT_ESCAPE.search(raw_path.encode()):
            raise FramingError(400, "request path with an escaped separator or a malformed escape")
        try:
            path = unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise FramingError(400, "request path is not UTF-8") from None
    segments = path.split("/")[1:]
    if "." in segments or ".." in segments or "//" in path:
        raise FramingError(400, "request path with '.', '..' or empty segments")
    if CONTROL.search(path):
        raise FramingError(400, "request path with control characters")
    return path


def decoded_query(raw_query: str) -> dict[str, list[str]]:
    """parse_qs, where Go's url.ParseQuery would read the same pairs: ';' and malformed
    escapes make Go drop a pair that Python keeps (or the reverse), so both are refused."""
    if not raw_query:
        return {}
    if ";" in raw_query or PERCENT_ESCAPE.search(raw_query.encode()):
        raise FramingError(400, "query string with ';' or a malformed escape")
    try:
        return parse_qs(raw_query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise FramingError(400, "query string is not UTF-8") from None


# ---------------------------------------------------------------- forwarding


def forwarded_headers(request: RequestHead, body_size: int, upgrade: bool,
                      keep_alive: bool = False) -> list[tuple[bytes, bytes]]:
    """The client's end-to-end headers, with our own framing: one Host, a Content-Length for
    the body as read (chunked bodies are re-framed), and Connection: close (one response per
    upstream connection, read to its end), the upgrade the client asked for, or nothing
    (keep-alive: a pooled connection for a small answer)."""
    headers = [(b"host", b"docker")]
    headers += [(key, value) for key, value in request.headers if key not in HOP_BY_HOP]
    if upgrade:
        protocol = header_values(request, b"upgrade")[0].encode("latin-1")
        headers += [(b"connection", b"Upgrade"), (b"upgrade", protocol)]
    elif not keep_alive:
        headers.append((b"connection", b"close"))
    if body_size or request.method in (b"POST", b"PUT", b"PATCH"):
        headers.append((b"content-length", str(body_size).encode()))
    return headers
