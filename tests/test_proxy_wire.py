"""gatekeeper.proxy.wire: the engine's answers as httptools reads them, and the heads the
proxy writes. Each refusal beside the well-formed answer it differs from (the control)."""

from __future__ import annotations

import pytest

from gatekeeper.proxy import wire

GOOD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"


def read(head: bytes, bodiless: bool = False) -> tuple[wire.ResponseReader, wire.EngineHead]:
    reader = wire.ResponseReader(bodiless=bodiless)
    buffer = bytearray(head)
    whole = wire.split_head(buffer)
    assert whole is not None and not buffer
    return reader, reader.head(whole)


def test_a_well_formed_head_is_read() -> None:
    reader, head = read(GOOD)
    assert (head.status, head.reason, head.length, head.chunked) == (200, b"OK", 2, False)
    assert head.headers == [(b"content-type", b"application/json"), (b"content-length", b"2")]
    assert reader.body(b"{}") == b"{}" and reader.complete and not reader.excess


@pytest.mark.parametrize("head", [
    GOOD.replace(b"\r\n", b"\n").replace(b"\n\n", b"\r\n\r\n"),  # bare LF inside the head
    GOOD.replace(b"Content-Length: 2", b"Content-Length: 2\r\nTransfer-Encoding: chunked"),  # CL and TE
    GOOD.replace(b"Content-Length: 2", b"Transfer-Encoding: gzip, chunked"),  # a coding we do not relay
    GOOD.replace(b"Content-Length: 2", b"Content-Length: 2\r\nContent-Length: 3"),  # two lengths
    GOOD.replace(b"HTTP/1.1", b"HTTP/1.0"),
    GOOD.replace(b"application/json", b"application/\x00json"),
    GOOD.replace(b"Content-Length: 2", b"Content-Length: -2"),
], ids=["bare-lf", "cl-and-te", "te-gzip", "two-lengths", "http-1.0", "nul-in-value", "negative-length"])
def test_an_ambiguous_or_malformed_head_is_refused(head: bytes) -> None:
    read(GOOD)  # control: the same head without the flaw is read
    with pytest.raises(wire.EngineProtocolError):
        read(head)


def test_chunked_body_is_reframed_and_nothing_past_its_end_is_relayed() -> None:
    reader, head = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert head.chunked
    out = reader.framed(b"3\r\nabc\r\n")
    out += reader.framed(b"2\r\nde\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
    assert out == b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    assert reader.complete and reader.excess  # a second answer came: the connection is not reused


def test_a_content_length_body_ends_at_its_length() -> None:
    reader, _ = read(GOOD)
    assert reader.framed(b"{}GET") == b"{}"
    assert reader.complete and reader.excess
    reader, _ = read(GOOD)  # control: exactly the body
    assert reader.framed(b"{") == b"{" and not reader.complete
    assert reader.framed(b"}") == b"}" and reader.complete and not reader.excess


def test_an_answer_to_head_has_no_body_whatever_its_length_says() -> None:
    reader, head = read(GOOD, bodiless=True)
    assert head.length == 2 and reader.complete and reader.framed(b"") == b""
    reader, _ = read(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert reader.complete


def test_a_head_is_split_only_when_whole_and_bounded() -> None:
    buffer = bytearray(GOOD[:-2])
    assert wire.split_head(buffer) is None
    buffer += b"\r\n{}"
    assert wire.split_head(buffer) == GOOD and buffer == b"{}"
    with pytest.raises(wire.EngineProtocolError):
        wire.split_head(bytearray(b"HTTP/1.1 200 OK\r\nX: " + b"a" * wire.MAX_HEAD))


def test_written_heads_never_split_a_field_into_two() -> None:
    assert wire.request_head(b"GET", b"/v1.41/containers/json?all=1", [(b"host", b"docker")]) == (
        b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\nhost: docker\r\n\r\n")
    for name, value in ((b"x", b"a\r\nInjected: 1"), (b"x", b"a\nb"), (b"x", b"a\x00"), (b"x y", b"1"),
                        (b"x:", b"1"), (b"", b"1")):
        with pytest.raises(wire.EngineProtocolError):
            wire.request_head(b"GET", b"/_ping", [(name, value)])
        with pytest.raises(wire.EngineProtocolError):  # (among good fields, first or last: all are checked)
            wire.request_head(b"GET", b"/_ping", [(b"host", b"docker"), (name, value)])
        with pytest.raises(wire.EngineProtocolError):
            wire.response_head(200, b"OK", [(name, value), (b"content-length", b"0")])
    for target in (b"/a b", b"/a\r\nHost: x", b"http://x/", b"/\x7f"):
        with pytest.raises(wire.EngineProtocolError):
            wire.request_head(b"GET", target, [])
    with pytest.raises(wire.EngineProtocolError):
        wire.request_head(b"GE T", b"/_ping", [])
    assert wire.response_head(200, b"OK\r\nX: 1", [(b"content-length", b"0")]) == (
        b"HTTP/1.1 200 \r\ncontent-length: 0\r\n\r\n")


def test_chunk_frames_a_piece_and_skips_an_empty_one() -> None:
    assert wire.chunk(b"hello") == b"5\r\nhello\r\n"
    assert wire.chunk(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert wire.chunk(b"") == b""


@pytest.mark.parametrize("head", [
    GOOD,
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Blanks: \t a b \t \r\nX-Colon: a:b: c\r\nX-Obs: caf\xe9\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n"
    b"Docker-Experimental: false\r\nOstype: linux\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\n"
    b"Date: Mon, 30 Nov 2026 20:00:00 GMT\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
], ids=["good", "no-fields", "odd-values", "upgrade", "dockerd"])
def test_fields_read_from_the_head_are_the_ones_llhttp_reads(head: bytes) -> None:
    """head_fields splits the head llhttp accepted; each field as llhttp's own callback gives it."""
    import httptools

    seen = wire.Callbacks()
    try:
        httptools.HttpResponseParser(seen).feed_data(head)
    except httptools.HttpParserUpgrade:
        pass
    _, answer = read(head)
    assert answer.headers == seen.headers


@pytest.mark.parametrize("line", [b"X: a\rY: b", b"X: a\r\n folded", b"X : a", b"X: a\nY: b", b"X\x01: a"],
                         ids=["bare-cr", "obs-fold", "blank-before-colon", "bare-lf", "name-not-a-token"])
def test_a_field_line_llhttp_would_split_otherwise_is_refused(line: bytes) -> None:
    """head_fields relies on llhttp refusing every line but `name: value` CRLF."""
    read(GOOD.replace(b"Content-Length: 2", b"X: a\r\nContent-Length: 2"))  # control: a plain field line
    with pytest.raises(wire.EngineProtocolError):
        read(GOOD.replace(b"Content-Length: 2", line + b"\r\nContent-Length: 2"))
