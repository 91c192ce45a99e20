"""The client's request reader (httptools, gatekeeper.proxy.request_reader) against the reader
it replaced (h11), byte for byte: the same raw requests through both, with the same framing
checks after each. The control of every case is h11's verdict: where the two agree the table
says nothing more; where llhttp reads differently, DIFFERENT says how and why that is as safe
(every difference is a refusal where h11 let the request through, or a refusal with another
status, or bytes after a request that never reach the engine)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.proxy import framing
from gatekeeper.proxy.framing import FramingError
from gatekeeper.proxy.request_reader import MAX_HEAD, RequestReader

from .test_proxy_framing import CONTROLS, REFUSED

MAX_BODY = 4096
MAX_BUILD = 100000
H = b"Host: docker\r\n"

Verdict = tuple[object, ...]


def checked(event: framing.RequestHead | h11.Request) -> tuple[framing.Target, int | None]:
    """The checks server.read_request makes after parsing, in its order (check_raw_head aside);
    h11's parse taken as it is: its method, target, fields and version."""
    if isinstance(event, h11.Request):
        event = framing.RequestHead(event.method, event.target, list(event.headers), event.http_version)
    target = framing.split_target(event.target)
    framing.check_head(event, target.path)
    length = framing.body_length(event)
    build = target.path in framing.CHUNKED_PATHS and event.method == b"POST"
    framing.check_body_size(length, MAX_BUILD if build else MAX_BODY)
    return target, length


def h11_verdict(raw: bytes) -> Verdict:
    """The reader before this one (server.read_request up to d259ea3), synchronous."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(raw)
    try:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            return ("incomplete",)
        if not isinstance(event, h11.Request):
            raise FramingError(400, "malformed request")
        head_size = len(raw) - len(conn.trailing_data[0])
        if head_size > MAX_HEAD:
            raise FramingError(431, "request head over the cap")
        framing.check_raw_head(raw[:head_size])  # (h11 keeps a body after the head as trailing data)
        checked(event)
        parts = []
        while True:
            part = conn.next_event()
            if part is h11.NEED_DATA:
                return ("incomplete",)
            if isinstance(part, h11.Data):
                parts.append(part.data)
            elif isinstance(part, h11.EndOfMessage):
                if part.headers:
                    raise FramingError(400, "chunked request with trailers")
                break
            else:
                raise FramingError(400, "request body cut short")
    except h11.RemoteProtocolError as error:
        return ("refused", error.error_status_hint)
    except FramingError as error:
        return ("refused", error.status)
    headers = [(key, value) for key, value in event.headers]
    return ("read", event.method, event.target, headers, b"".join(parts), conn.trailing_data[0])


def llhttp_verdict(raw: bytes, pieces: int = 1) -> Verdict:
    """This reader, given `raw` in `pieces` parts as server.read_request drives it."""
    size = max(1, -(-len(raw) // pieces))
    parts = [raw[at:at + size] for at in range(0, len(raw), size)]
    reader = RequestReader(parts.pop(0) if parts else b"")
    try:
        while (event := reader.head()) is None:
            if not parts:
                return ("incomplete",)
            reader.add(parts.pop(0))
        framing.check_raw_head(reader.head_bytes)
        _, length = checked(event)
        if length is None:
            body = reader.chunked()
            while not reader.chunked_done:
                if not parts:
                    return ("incomplete",)
                reader.add(parts.pop(0))
                body += reader.chunked()
        else:
            while (whole := reader.body(length)) is None:
                if not parts:
                    return ("incomplete",)
                reader.add(parts.pop(0))
            body = whole
    except FramingError as error:
        return ("refused", error.status)
    for part in parts:
        reader.add(part)
    return ("read", event.method, event.target, event.headers, body, bytes(reader.buffer))


# Requests both readers read alike (beyond test_proxy_framing's REFUSED and CONTROLS).
SAME = [
    ("pipelined-gets", b"GET /_ping HTTP/1.1\r\n" + H + b"\r\nGET /version HTTP/1.1\r\n" + H + b"\r\n"),
    ("pipelined-after-a-body", b"POST /echo HTTP/1.1\r\n" + H +
     b"Content-Length: 2\r\n\r\n{}GET /x HTTP/1.1\r\n"),
    ("upgrade-then-stream", b"POST /containers/c1/attach HTTP/1.1\r\n" + H +
     b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n\x01\x00\x00\x00raw stream"),
    ("upgrade-with-a-body", b"POST /exec/e1/start HTTP/1.1\r\n" + H +
     b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 2\r\n\r\n{}raw"),
    ("incomplete-head", b"GET /_ping HTTP/1.1\r\n" + H),
    ("incomplete-body", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n{}"),
    ("incomplete-chunked", b"POST /build HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"),
    ("nul-in-value", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    ("bare-cr-in-value", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n"),
    ("obs-text-in-value", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A: caf\xe9\r\n\r\n"),
    ("tab-in-value", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A: a\tb\r\n\r\n"),
    ("blanks-around-value", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A: \t a b \t\r\n\r\n"),
    ("empty-value", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A:\r\n\r\n"),
    ("space-before-colon", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A : 1\r\n\r\n"),
    ("empty-header-name", b"GET /_ping HTTP/1.1\r\n" + H + b": 1\r\n\r\n"),
    ("header-name-not-a-token", b"GET /_ping HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n"),
    ("header-without-colon", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A\r\n\r\n"),
    ("non-ascii-target", b"GET /_ping\xff HTTP/1.1\r\n" + H + b"\r\n"),
    ("space-in-target", b"GET /_p ing HTTP/1.1\r\n" + H + b"\r\n"),
    ("tab-in-target", b"GET /_p\ting HTTP/1.1\r\n" + H + b"\r\n"),
    ("leading-crlf", b"\r\nGET /_ping HTTP/1.1\r\n" + H + b"\r\n"),
    ("leading-space", b" GET /_ping HTTP/1.1\r\n" + H + b"\r\n"),
    ("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    ("two-spaces-in-request-line", b"GET  /_ping HTTP/1.1\r\n" + H + b"\r\n"),
    ("no-version", b"GET /_ping\r\n" + H + b"\r\n"),
    ("lowercase-version", b"GET /_ping http/1.1\r\n" + H + b"\r\n"),
    ("hosts-in-two-cases", b"GET /_ping HTTP/1.1\r\n" + H + b"host: docker\r\n\r\n"),
    ("empty-host", b"GET /_ping HTTP/1.1\r\nHost:\r\n\r\n"),
    ("chunked-capitalised", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked\r\n\r\n"
     b"2\r\nab\r\n0\r\n\r\n"),
    ("two-coding-headers", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"),
    ("length-with-plus", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +2\r\n\r\n{}"),
    ("length-in-hex", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x2\r\n\r\n{}"),
    ("length-negative", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n{}"),
    ("length-huge", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n"),
    ("length-two-different", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n"
     b"Content-Length: 3\r\n\r\n{}"),
    ("length-with-blanks", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length:  2 \r\n\r\n{}"),
    ("get-with-a-body", b"GET /_ping HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\n{}"),
    ("chunk-size-upper-hex", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"A\r\n0123456789\r\n0\r\n\r\n"),
    ("chunk-size-leading-zeros", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"002\r\nab\r\n0\r\n\r\n"),
    ("chunk-size-not-hex", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nab\r\n0\r\n\r\n"),
    ("chunk-too-long", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\r\nabc\r\n0\r\n\r\n"),
    ("chunk-extension", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2;name=value\r\nab\r\n0\r\n\r\n"),
    ("chunked-trailer-field", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\r\nab\r\n0\r\nX-A: 1\r\n\r\n"),
    ("chunked-two-trailer-fields", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\r\nab\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"),
    ("expect-continue-no-body", b"POST /echo HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
     b"Content-Length: 0\r\n\r\n"),
    ("connection-close", b"GET /_ping HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /x HTTP/1.1\r\n"),
    ("http-0.9", b"GET /_ping\r\n\r\n"),
    ("empty-query", b"GET /_ping? HTTP/1.1\r\n" + H + b"\r\n"),
    ("percent-encoded-target", b"GET /containers/a%20b/json HTTP/1.1\r\n" + H + b"\r\n"),
    ("long-but-fine-head", b"GET /_ping HTTP/1.1\r\n" + H + b"X-Pad: " + b"a" * 60000 + b"\r\n\r\n"),
    ("head-just-over", b"GET /_ping HTTP/1.1\r\n" + H + b"X-Pad: " + b"a" * 65500 + b"\r\n\r\n"),
]  # fmt: skip

# Where llhttp reads differently: (id, raw, h11's verdict, this reader's verdict, why it is as safe).
DIFFERENT = [
    ("unknown-method", b"FROB /_ping HTTP/1.1\r\n" + H + b"\r\n", "read", ("refused", 400),
     "llhttp knows the methods it parses; h11 passed any token to the decision, which refused it (no route)"),
    ("lowercase-method", b"get /_ping HTTP/1.1\r\n" + H + b"\r\n", "read", ("refused", 400),
     "the same: a method is case-sensitive, and no route has a lowercase one"),
    ("http-1.2", b"GET /_ping HTTP/1.2\r\n" + H + b"\r\n", ("refused", 505), ("refused", 400),
     "llhttp knows the versions there are; only 1.1 is served either way"),
    ("pipelined-after-chunked", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\r\nab\r\n0\r\n\r\nGET /_ping HTTP/1.1\r\n" + H + b"\r\n", "read", ("refused", 400),
     "llhttp does not say where in a read a chunked body ended: the build is refused, nothing is forwarded"),
    ("chunked-upgrade-on-build", b"POST /build HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: h2c\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", "read", ("refused", 400),
     "llhttp reads no body before an upgraded stream, h11 read the chunks: refused (no client sends it)"),
    ("control-char-in-value", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", "read",
     ("refused", 400),
     "h11 let control characters through in values; llhttp refuses them (Go does too)"),
    ("del-in-value", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", "read", ("refused", 400),
     "the same for DEL"),
    ("chunked-twice", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n"
     b"2\r\nab\r\n0\r\n\r\n", ("refused", 501), ("refused", 400),
     "refused by llhttp before the coding check: another status, refused either way"),
    ("identity-coding", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n",
     ("refused", 501), ("refused", 400), "the same"),
    ("chunk-bare-lf", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\nab\n0\n\n", "incomplete", ("refused", 400),
     "h11 waited for a CRLF that never came (then the body timeout); llhttp refuses the bare LF at once"),
    ("crlf-after-chunked", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\r\nab\r\n0\r\n\r\n\r\n", "read", "read",
     "llhttp skips blank lines between messages: h11 kept the CRLF and refused it as the next request "
     "(no request line) after the build's answer; here it is dropped. Neither forwards it"),
]  # fmt: skip

SAME_READ_ONLY = [case[1] for case in DIFFERENT
                  if case[0] in ("pipelined-after-chunked", "crlf-after-chunked")]
TABLE = ([(name, raw) for name, raw, *_ in REFUSED] + [(name, raw) for name, raw in CONTROLS] + SAME)


def verdict_kind(verdict: Verdict) -> object:
    """"read", "incomplete" or ("refused", status)."""
    return verdict if verdict[0] == "refused" else verdict[0]


@pytest.mark.parametrize("raw", [case[1] for case in TABLE], ids=[case[0] for case in TABLE])
def test_llhttp_reads_as_h11_did(raw: bytes) -> None:
    assert llhttp_verdict(raw) == h11_verdict(raw)


@pytest.mark.parametrize(("raw", "before", "after"), [case[1:4] for case in DIFFERENT],
                         ids=[case[0] for case in DIFFERENT])
def test_where_llhttp_reads_differently(raw: bytes, before: object, after: object) -> None:
    old, new = h11_verdict(raw), llhttp_verdict(raw)
    assert verdict_kind(old) == before  # the control: what h11 made of it
    assert verdict_kind(new) == after
    if new[0] == "read":  # the request itself is read alike; only what follows it differs
        assert new[:5] == old[:5]
        assert new[5] != old[5]


@pytest.mark.parametrize("raw", [case[1] for case in TABLE + [(d[0], d[1]) for d in DIFFERENT]],
                         ids=[case[0] for case in TABLE + [(d[0], d[1]) for d in DIFFERENT]])
def test_read_alike_in_pieces(raw: bytes) -> None:
    """However the bytes arrive (one read, or a byte at a time), the verdict is the same."""
    whole = llhttp_verdict(raw)
    for pieces in (2, 3, 7, min(len(raw), 200)):
        in_pieces = llhttp_verdict(raw, pieces)
        if raw in SAME_READ_ONLY:
            continue  # (what follows a chunked body counts only when it arrives in the same read)
        assert in_pieces == whole, pieces


def test_tables_are_apart() -> None:
    names = [case[0] for case in TABLE] + [case[0] for case in DIFFERENT]
    assert len(set(names)) == len(names)
    assert all(case[4] for case in DIFFERENT)


# ---------------------------------------------------------------- never more lenient than h11

BASES = [
    b"GET /v1.45/containers/json?all=1 HTTP/1.1\r\n" + H + b"User-Agent: Docker-Client/27\r\n\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    b"POST /containers/c1/attach HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
]
MUTATION_BYTES = b"\r\n \t\x00:,;a0\x7f\xff/%?"


@given(base=st.sampled_from(BASES),
       edits=st.lists(st.tuples(st.integers(0, 400), st.sampled_from(list(MUTATION_BYTES)), st.booleans()),
                      min_size=1, max_size=4))
@settings(max_examples=1500, deadline=None)
def test_llhttp_reads_nothing_h11_refused(base: bytes, edits: list[tuple[int, int, bool]]) -> None:
    """Bytes inserted or replaced anywhere: a request this reader reads, h11 read the same way
    (the same method, target, fields, body; what follows it aside, see crlf-after-chunked)."""
    raw = bytearray(base)
    for where, byte, insert in edits:
        at = where % (len(raw) + 1)
        if insert or at == len(raw):
            raw[at:at] = bytes([byte])
        else:
            raw[at] = byte
    new = llhttp_verdict(bytes(raw))
    if new[0] == "read":
        assert h11_verdict(bytes(raw))[:5] == new[:5]
