"""The proxy's HTTP/1.1 on the engine's side, and the heads it writes to both sides.

The engine's responses are parsed by httptools (llhttp, the parser behind Node.js and
uvicorn), strict: CRLF line endings only, no Content-Length beside Transfer-Encoding,
no control characters in header values; anything else is an EngineProtocolError and
the client gets a 502, never a guess. Heads the proxy sends are written here from
parts that are already checked: the request-target the decision rebuilt (visible ASCII),
header fields parsed and validated by llhttp (the client's request, the engine's
response), and our own constants; `fields` refuses a CR, LF or NUL anyway,
so no field can become two.

It replaced h11 on this side: h11 took about 0.1 ms of pure Python per request for
the three passes (our request out, the engine's answer in, our answer out) on every
request the proxy relays (docs/performance.md). The client's requests are read with
httptools too (gatekeeper.proxy.request_reader), then gatekeeper.proxy.framing, where the
smuggling checks are.
"""

from __future__ import annotations

import re

import httptools

from gatekeeper.engine_api import EngineError

MAX_HEAD = 64 << 10
HEAD_END = b"\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
BODILESS = (204, 304)
TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NOT_VISIBLE = re.compile(rb"[^\x21-\x7e]")  # a request-target is visible ASCII only


class EngineProtocolError(EngineError):
    """The engine's answer is not HTTP/1.1 as we read it (or not there at all); a decision
    that asked the question denies on it as on any EngineError."""


class EngineHead:
    """A response head from the engine: status, reason and its header fields (names
    lowercased, values without surrounding blanks)."""

    __slots__ = ("status", "reason", "headers", "length", "chunked")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        lengths = [value for key, value in headers if key == b"content-length"]
        codings = [value for key, value in headers if key == b"transfer-encoding"]
        if len(lengths) > 1 or len(codings) > 1 or (codings and codings[0].lower() != b"chunked"):
            raise EngineProtocolError("the engine framed its answer ambiguously")
        self.length = int(lengths[0]) if lengths else None  # llhttp has checked the digits
        self.chunked = bool(codings)


class MessageCallbacks:
    """httptools' callbacks for one message, either side: where its head ends, then the first
    message's body pieces. No header callback: an engine answer's fields are read from its head
    (head_fields), one list instead of a call from llhttp per field."""

    __slots__ = ("head_done", "body", "complete", "messages")

    def __init__(self) -> None:
        self.head_done = False
        self.body: list[bytes] = []
        self.complete = False
        self.messages = 0

    def on_message_begin(self) -> None:
        self.messages += 1

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, data: bytes) -> None:
        if self.messages == 1:
            self.body.append(data)

    def on_message_complete(self) -> None:
        if self.messages == 1:
            self.complete = True


class Callbacks(MessageCallbacks):
    """MessageCallbacks and each header field as llhttp reads it (names lowercased, values
    without surrounding blanks): a client's request, whose chunked body's trailer fields
    must be seen (to be refused)."""

    __slots__ = ("headers",)

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            self.on_trailer()
        else:
            self.headers.append((name.lower(), value.strip(b" \t")))

    def on_trailer(self) -> None:
        """A chunked body's trailer field (a request's are refused)."""


class Parsed(MessageCallbacks):
    """One engine response: its reason phrase too (its trailer fields, if any, are dropped)."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        super().__init__()
        self.reason = b""

    def on_status(self, reason: bytes) -> None:
        self.reason += reason


class ResponseReader:
    """One engine response read with httptools: `head(head)` parses a complete head,
    `body(data)` feeds what follows it and returns the body's bytes in it (never a byte
    past the response's end); `complete` says the response has ended; `excess`, that the
    engine sent more than one response (the connection is not reused)."""

    __slots__ = ("parsed", "parser", "bodiless", "chunked", "excess")

    def __init__(self, bodiless: bool = False) -> None:
        self.parsed = Parsed()
        self.parser = httptools.HttpResponseParser(self.parsed)
        self.bodiless = bodiless  # an answer to HEAD: its end is its head, whatever it says
        self.chunked = False
        self.excess = False

    @property
    def complete(self) -> bool:
        return self.bodiless or self.parsed.complete

    def head(self, head: bytes) -> EngineHead:
        """`head` is the bytes up to and including the first CRLF CRLF."""
        try:
            self.parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass  # a 101: what follows is the upgraded stream, not HTTP
        except httptools.HttpParserError as error:
            raise EngineProtocolError(f"malformed answer from the engine ({error})") from None
        parsed = self.parsed
        if not parsed.head_done or parsed.body or parsed.messages != 1:
            raise EngineProtocolError("malformed answer from the engine (head)")
        if self.parser.get_http_version() != "1.1":
            raise EngineProtocolError("the engine answered in another HTTP version than 1.1")
        answer = EngineHead(self.parser.get_status_code(), parsed.reason, head_fields(head))
        self.chunked = answer.chunked
        if answer.status in BODILESS:
            self.bodiless = True
        return answer

    def body(self, data: bytes) -> bytes:
        """The body's bytes in `data` (what follows the head, in order)."""
        if not data or self.complete:
            self.excess = self.excess or bool(data)
            return b""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if not self.parsed.complete:
                raise EngineProtocolError(f"malformed body from the engine ({error})") from None
        self.excess = self.excess or self.parsed.messages > 1
        pieces, self.parsed.body = self.parsed.body, []
        return b"".join(pieces)

    def framed(self, data: bytes) -> bytes:
        """The body's bytes in `data` framed for the client as the engine framed them:
        as they are under a Content-Length, as chunks (the last one at the end) when chunked."""
        if self.bodiless:
            return b""
        body = self.body(data)
        if not self.chunked:
            return body
        return chunk(body) + (LAST_CHUNK if self.complete else b"")


def head_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of a head llhttp has read without an error (names lowercased, values
    without surrounding blanks, in order). Strict, llhttp has refused every line but `name:
    value` CRLF (a bare CR or LF, obs-fold, a blank before the colon, a name not a token), so
    the lines between the status line and the blank line are exactly the fields it read, and a
    name, a token, ends at the first colon; no field line is empty, so the first CRLF CRLF
    ends the fields."""
    lines = head[:head.find(HEAD_END)].split(b"\r\n")
    return [(name.lower(), value.strip(b" \t"))
            for name, _, value in [line.partition(b":") for line in lines[1:]]]


def split_head(buffer: bytearray) -> bytes | None:
    """The head at the start of `buffer` (taken out of it), or None while it is incomplete."""
    end = buffer.find(HEAD_END)
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise EngineProtocolError(f"the engine's answer has a head over {MAX_HEAD} bytes")
        return None
    head = bytes(buffer[:end + len(HEAD_END)])
    del buffer[:end + len(HEAD_END)]
    return head


# ---------------------------------------------------------------- what the proxy writes


def fields(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header lines; a name or value that could end a line is refused (never written)."""
    names = [name for name, _ in headers]
    values = b"".join([value for _, value in headers])  # (checked at once: one scan, not one per field)
    if b"\r" in values or b"\n" in values or b"\x00" in values or not all_tokens(names):
        raise EngineProtocolError("a header field that cannot be written as one line")
    return b"".join([b"%s: %s\r\n" % field for field in headers])


def all_tokens(names: list[bytes]) -> bool:
    """Every name a token (none empty): what is left of them all without token characters is nothing."""
    return all(names) and not b"".join(names).translate(None, TOKEN)


def is_token(name: bytes) -> bool:
    """RFC 9110 token (a method, a header name): deleting every token character leaves nothing."""
    return bool(name) and not name.translate(None, TOKEN)


def request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    if not target.startswith(b"/") or NOT_VISIBLE.search(target):
        raise EngineProtocolError(f"not a request target: {target[:80]!r}")
    if not is_token(method):
        raise EngineProtocolError("not a request method")
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, fields(headers))


def response_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    if b"\r" in reason or b"\n" in reason:
        reason = b""
    return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, fields(headers))


def chunk(data: bytes) -> bytes:
    """One piece of a body the proxy frames itself (one the engine delimited by closing)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
