"""A client's request read with httptools (llhttp, strict: no lenient flag set), one at a time.

Sans I/O: the transport (gatekeeper.proxy.server) adds the bytes it receives and asks for
the head, then the body; this module only says what the bytes are, or raises a FramingError.
Exactly one request is parsed from the bytes given: the head ends at the first blank line
(h11's rule, which this reader replaced), only those bytes reach the parser, a body with a
Content-Length is the next that many bytes, and whatever follows is left in `buffer` untouched
(a pipelined next request, or the stream after an Upgrade), to be read after this one is
decided and answered. A chunked body (only a build context, framing.CHUNKED_PATHS) is parsed
by llhttp too; since llhttp does not say where in a feed a message ended, a chunked body must
be the last thing the client sent before the answer (anything after it in the same read is
refused, not parsed as the next request). The checks h11 made while parsing and llhttp does
not (one Host, only `chunked` as a coding, visible ASCII in the target, no control
characters in values) are made here; framing.check_raw_head and framing.check_head follow.
"""

from __future__ import annotations

import re

import httptools

from gatekeeper.proxy.framing import RULE_FRAMING, FramingError, RequestHead
from gatekeeper.proxy.wire import Callbacks

MAX_HEAD = 64 << 10
BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of a head, bare LF included (refused after parsing)
# Header values: visible ASCII, obs-text, SP and HTAB (RFC 9110 5.5; h11 let other control
# characters through, llhttp refuses them: this check does not depend on either).
VALUE_REFUSED = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
TARGET_REFUSED = re.compile(rb"[^\x21-\x7e]")


class Parsed(Callbacks):
    """One request: its target too, and whether a chunked body carried trailer fields."""

    __slots__ = ("target", "trailers")

    def __init__(self) -> None:
        super().__init__()
        self.target = b""
        self.trailers = False

    def on_url(self, target: bytes) -> None:
        self.target += target

    def on_trailer(self) -> None:
        self.trailers = True  # refused


class RequestReader:
    """One request: `add` the bytes received, `head()` until it returns the head, then
    `body(length)` (a Content-Length) or `chunked()` until the body is whole; `buffer`
    keeps what came after the request."""

    __slots__ = ("buffer", "head_bytes", "request_line", "parsed", "parser", "searched", "chunked_done")

    def __init__(self, pending: bytes = b"") -> None:
        self.buffer = bytearray(pending)
        self.head_bytes = b""  # the head as received, once in (for framing.check_raw_head)
        self.request_line = ("", "")  # method and target, once parsed (for the audit record)
        self.parsed = Parsed()
        self.parser = httptools.HttpRequestParser(self.parsed)
        self.searched = 0  # where the search for the blank line resumes
        self.chunked_done = False

    def add(self, data: bytes) -> None:
        self.buffer += data

    def head(self) -> RequestHead | None:
        """The head once its blank line is in; None while it is not (within MAX_HEAD)."""
        buffer = self.buffer
        if buffer and buffer[0] < 0x21:
            # (h11's rule: a request line never starts with a blank or a control byte; a leading
            # CRLF, which llhttp would skip, is refused too)
            raise FramingError(400, "malformed request: no request line")
        end = BLANK_LINE.search(buffer, self.searched)
        if end is None:
            if len(buffer) > MAX_HEAD:
                raise FramingError(431, f"request head over {MAX_HEAD} bytes")
            self.searched = max(0, len(buffer) - 2)
            return None
        size = end.end()
        if size > MAX_HEAD:
            raise FramingError(431, f"request head over {MAX_HEAD} bytes")
        self.head_bytes = bytes(buffer[:size])
        del buffer[:size]
        return self.parse_head(self.head_bytes)

    def parse_head(self, head: bytes) -> RequestHead:
        parsed, parser = self.parsed, self.parser
        if head.count(b" ", 0, head.find(b"\n")) != 2:
            # method SP target SP version, nothing else (llhttp skips a second blank, and reads a
            # line without a version as HTTP/0.9; h11 refused both)
            raise FramingError(400, "malformed request: request line")
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass  # Connection: upgrade: what follows is the body (its Content-Length), then the stream
        except httptools.HttpParserError as error:
            self.name_request()
            raise FramingError(400, f"malformed request: {error}", RULE_FRAMING) from None
        if not parsed.head_done or parsed.messages != 1:
            raise FramingError(400, "malformed request")
        if TARGET_REFUSED.search(parsed.target):
            raise FramingError(400, "malformed request: request target with other than visible ASCII")
        self.name_request()
        headers = parsed.headers
        if VALUE_REFUSED.search(b"\t".join([value for _, value in headers])):
            raise FramingError(400, "malformed request: control character in a header value")
        version = parser.get_http_version().encode()
        if b"transfer-encoding" in (name for name, _ in headers):
            headers = self.checked_codings(headers)
        request = RequestHead(parser.get_method(), parsed.target, headers, version)
        if version == b"1.1" and len(request.fields.get(b"host", ())) != 1:
            raise FramingError(400, "malformed request: one Host header required")
        return request

    def checked_codings(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Only `chunked` (h11's rule: 501 for anything else), its value lowercased as h11 did."""
        headers = [(name, value.lower() if name == b"transfer-encoding" else value)
                   for name, value in headers]
        codings = b",".join([value for name, value in headers if name == b"transfer-encoding"])
        if [token.strip() for token in codings.split(b",")] != [b"chunked"]:
            raise FramingError(501, "only Transfer-Encoding: chunked is supported")
        if self.parser.should_upgrade():
            # llhttp would read no body before the upgraded stream, h11 read the chunks: neither is
            # a request any client of ours sends.
            raise FramingError(400, "ambiguous request: a chunked body before an Upgrade")
        return headers

    def name_request(self) -> None:
        """The method and target for the record, once llhttp has read past them (a refusal
        later in the head is recorded with them)."""
        target = self.parsed.target
        if target and not TARGET_REFUSED.search(target):  # (on_url comes after the method)
            self.request_line = (self.parser.get_method().decode("ascii"), target.decode("ascii"))

    def body(self, length: int) -> bytes | None:
        """The next `length` bytes (a body framed by its Content-Length), once all are in."""
        if len(self.buffer) < length:
            return None
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body

    def chunked(self) -> bytes:
        """The chunked body's bytes decoded from what was added since the last call;
        `chunked_done` once its last chunk is in (trailer fields refused)."""
        data, self.buffer = bytes(self.buffer), bytearray()
        parsed = self.parsed
        followed = False  # bytes after the body's end that llhttp refused (after Connection: close)
        if data:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError as error:
                if not parsed.complete:
                    raise FramingError(400, f"malformed chunked body: {error}") from None
                followed = True
        if parsed.trailers:
            raise FramingError(400, "chunked request with trailers")
        if parsed.complete and (followed or parsed.messages > 1):
            # Where llhttp ended the body in this read is not told, so the request that came
            # after it cannot be kept for later: the client sends it after the answer instead.
            raise FramingError(400, "a request sent after a chunked body before its answer")
        self.chunked_done = parsed.complete
        pieces, parsed.body = parsed.body, []
        return b"".join(pieces)
