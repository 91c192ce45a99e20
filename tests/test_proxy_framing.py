"""Request smuggling past the decision: every request the two parsers (ours and the
engine's) could read differently is refused before a byte of it reaches the engine.

Each refused request has its well-formed twin in CONTROLS, sent through the same proxy
in the same run and answered by the engine: the refusal is the framing rule's doing,
not a proxy that refuses everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.proxy import framing
from gatekeeper.proxy.framing import FramingError

from .proxy_harness import Harness, message_of, running, status_of

H = b"Host: docker\r\n"

# (id, raw request, expected status, rule): the trick each one tries is in its id.
REFUSED = [
    ("chunked-body-on-json-endpoint", b"POST /echo HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411, "api-framing"),
    ("content-length-and-chunked", b"POST /build HTTP/1.1\r\n" + H +
     b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", 400, "api-framing"),
    ("duplicate-content-length", b"POST /echo HTTP/1.1\r\n" + H +
     b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400, "api-framing"),
    ("content-length-list", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 2, 2\r\n\r\n{}", 400,
     "api-framing"),
    ("duplicate-host", b"GET /_ping HTTP/1.1\r\n" + H + H + b"\r\n", 400, "api-framing"),
    ("missing-host", b"GET /_ping HTTP/1.1\r\n\r\n", 400, "api-framing"),
    ("obs-fold-hides-a-header", b"GET /_ping HTTP/1.1\r\n" + H + b"X-A: 1\r\n Content-Length: 5\r\n\r\n",
     400, "api-framing"),
    ("bare-lf-line-endings", b"GET /_ping HTTP/1.1\n" + b"Host: docker\n\n", 400, "api-framing"),
    ("absolute-form-target", b"GET http://docker/_ping HTTP/1.1\r\n" + H + b"\r\n", 400, "api-framing"),
    ("asterisk-form-target", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 400, "api-framing"),
    ("http-1.0", b"GET /_ping HTTP/1.0\r\n" + H + b"\r\n", 505, "api-framing"),
    ("garbage", b"NOT HTTP AT ALL\r\n\r\n", 400, "api-framing"),
    ("dot-dot-segment", b"GET /containers/../_ping HTTP/1.1\r\n" + H + b"\r\n", 400, "api-framing"),
    ("escaped-dot-dot", b"GET /containers/%2e%2e/_ping HTTP/1.1\r\n" + H + b"\r\n", 400, "api-framing"),
    ("escaped-slash", b"GET /containers/a%2Fb/json HTTP/1.1\r\n" + H + b"\r\n", 400, "api-framing"),
    ("double-slash", b"GET //_ping HTTP/1.1\r\n" + H + b"\r\n", 400, "api-framing"),
    ("malformed-escape", b"GET /_ping%zz HTTP/1.1\r\n" + H + b"\r\n", 400, "api-framing"),
    ("semicolon-in-query", b"GET /containers/json?all=1;size=1 HTTP/1.1\r\n" + H + b"\r\n", 400,
     "api-framing"),
    ("connection-drops-a-header", b"GET /_ping HTTP/1.1\r\n" + H + b"Connection: x-registry-auth\r\n\r\n",
     400, "api-framing"),
    ("upgrade-without-connection", b"POST /containers/c1/attach HTTP/1.1\r\n" + H +
     b"Upgrade: tcp\r\nContent-Length: 0\r\n\r\n", 400, "api-framing"),
    ("upgrade-to-websocket", b"POST /containers/c1/attach HTTP/1.1\r\n" + H +
     b"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n", 400, "api-framing"),
    ("unknown-expectation", b"POST /echo HTTP/1.1\r\n" + H + b"Expect: magic\r\nContent-Length: 2\r\n\r\n{}",
     417, "api-framing"),
    ("huge-head", b"GET /_ping HTTP/1.1\r\n" + H + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n", 431,
     "api-framing"),
    ("body-over-cap", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n" + b"{" * 5000, 413,
     "api-body-size"),
    ("build-context-over-cap", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" +
     (b"8000\r\n" + b"a" * 0x8000 + b"\r\n") * 4 + b"0\r\n\r\n", 413, "api-body-size"),
    ("chunked-trailer", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\r\nab\r\n0\r\nContent-Length: 9\r\n\r\n", 400, "api-framing"),
    ("gzip-coding", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
     b"2\r\nab\r\n0\r\n\r\n", 501, "api-framing"),
    # Go's FormValue/ParseForm (the engine's query parameters) read a form body's pairs first:
    # dockerd 20.10 pulls the fromImage of a form body sent to /images/create.
    ("form-body-on-build", b"POST /build HTTP/1.1\r\n" + H + b"Content-Type: application/x-www-form-"
     b"urlencoded\r\nContent-Length: 11\r\n\r\nt=victim:1&", 415, "api-content-type"),
    ("form-body-case-and-params", b"POST /build HTTP/1.1\r\n" + H + b"Content-Type: Application/X-WWW-Form-"
     b"Urlencoded ; charset=utf-8\r\nContent-Length: 11\r\n\r\nt=victim:1&", 415, "api-content-type"),
    ("multipart-form-body", b"POST /build HTTP/1.1\r\n" + H + b"Content-Type: multipart/form-data; boundary=b"
     b"\r\nContent-Length: 2\r\n\r\n--", 415, "api-content-type"),
    ("form-body-on-json-endpoint", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Type: application/x-www-form-"
     b"urlencoded\r\nContent-Length: 2\r\n\r\n{}", 415, "api-content-type"),
    ("unknown-media-type", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Type: text/html\r\nContent-Length: 2"
     b"\r\n\r\n{}", 415, "api-content-type"),
    ("duplicate-content-type", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n"
     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 2\r\n\r\n{}", 400, "api-framing"),
]  # fmt: skip

# The same requests, well formed: they pass the transport and reach the engine.
CONTROLS = [
    ("ping", b"GET /_ping HTTP/1.1\r\n" + H + b"\r\n"),
    ("versioned-ping", b"GET /v1.41/_ping HTTP/1.1\r\n" + H + b"\r\n"),
    ("json-body-with-length", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\n{}"),
    ("body-at-cap", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 4096\r\n\r\n" + b"{" * 4096),
    ("chunked-build-context", b"POST /build HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
    ("query-with-escapes",
     b"GET /containers/json?filters=%7B%22a%22%3A1%7D&all=1 HTTP/1.1\r\n" + H + b"\r\n"),
    ("expect-continue",
     b"POST /echo HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"),
    ("keep-alive-token", b"GET /_ping HTTP/1.1\r\n" + H + b"Connection: keep-alive\r\n\r\n"),
    ("json-content-type", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Type: application/json; charset=utf-8"
     b"\r\nContent-Length: 2\r\n\r\n{}"),
    ("tar-build-context", b"POST /build HTTP/1.1\r\n" + H + b"Content-Type: application/x-tar\r\n"
     b"Content-Length: 11\r\n\r\nt=victim:1&"),
    ("text-plain-empty-post", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Type: text/plain\r\n"
     b"Content-Length: 0\r\n\r\n"),
]  # fmt: skip


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with running(tmp_path_factory.mktemp("framing")) as harness:
        # The twins are judged by what reaches the engine, pings among them: every ping forwarded
        # (the proxy's remembered answer, gatekeeper.proxy.pings, off for this module).
        harness.proxy.pings.fresh_seconds = 0.0
        yield harness


def closing(request: bytes) -> bytes:
    """The request with Connection: close, so the answer ends with the connection."""
    head, _, body = request.partition(b"\r\n\r\n")
    if b"Connection:" in head:
        return request
    return head + b"\r\nConnection: close\r\n\r\n" + body


@pytest.mark.parametrize(("raw", "status", "rule"), [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_refused_before_the_engine_sees_a_byte(proxy: Harness, raw: bytes, status: int, rule: str) -> None:
    before = len(proxy.engine.raw)
    answer = proxy.raw(raw)
    assert status_of(answer) == status, answer[:300]
    assert message_of(answer).startswith("gatekeeper: denied: ")
    assert message_of(answer).endswith(f"(rule {rule})")
    assert b"connection: close" in answer.lower()
    assert len(proxy.engine.raw) == before  # nothing went upstream


@pytest.mark.parametrize("raw", [case[1] for case in CONTROLS], ids=[case[0] for case in CONTROLS])
def test_well_formed_twin_reaches_the_engine(proxy: Harness, raw: bytes) -> None:
    count = len(proxy.engine.received)
    answer = proxy.raw(closing(raw) if b"Connection: keep-alive" not in raw else raw.replace(
        b"keep-alive", b"close"))
    final = answer.split(b"HTTP/1.1 100 Continue\r\n\r\n")[-1]
    assert status_of(final) == 200, answer[:300]
    assert len(proxy.engine.received) == count + 1


def test_chunked_build_context_is_reframed_with_a_length(proxy: Harness) -> None:
    proxy.raw(closing(CONTROLS[4][1]))
    method, target, headers, body = proxy.engine.received[-1]
    assert (method, target, body) == ("POST", "/build", b"abcde")
    assert headers.get("content-length") == "5"
    assert "transfer-encoding" not in headers
    record = proxy.records()[-1]
    assert (record["body_bytes"], record["chunked"]) == (5, True)


def test_refusals_are_audited(proxy: Harness) -> None:
    proxy.raw(REFUSED[2][1])
    record = proxy.records()[-1]
    assert record["layer"] == "api"
    assert (record["decision"], record["rule"], record["endpoint"]) == ("deny", "api-framing", "framing")
    assert record["method"] == "POST"
    assert record["target"] == "/echo"


# ---------------------------------------------------------------- the pure checks


@pytest.mark.parametrize(("target", "path", "version"), [
    (b"/_ping", "/_ping", None),
    (b"/v1.41/containers/json?all=1", "/containers/json", "1.41"),
    (b"/containers/a%20b/json", "/containers/a b/json", None),
    (b"/v1.41.1/_ping", "/v1.41.1/_ping", None),  # not a version prefix: decided as an unknown path
    (b"/volumes", "/volumes", None),
])  # fmt: skip
def test_targets_split_as_the_decision_reads_them(target: bytes, path: str, version: str | None) -> None:
    split = framing.split_target(target)
    assert (split.path, split.version) == (path, version)


def test_query_keeps_blank_values_and_repeats() -> None:
    assert framing.split_target(b"/build?t=a&t=b&q=").query == {"t": ["a", "b"], "q": [""]}


@pytest.mark.parametrize("target", [b"/containers/%ff/json", b"/x?a=%ff", b"/x#frag", b"/a\\b", b"/x/."])
def test_targets_refused(target: bytes) -> None:
    with pytest.raises(FramingError):
        framing.split_target(target)


def test_refused_table_covers_each_rule() -> None:
    assert {case[3] for case in REFUSED} == {framing.RULE_FRAMING, framing.RULE_BODY_SIZE,
                                             framing.RULE_CONTENT_TYPE}
    assert len({case[0] for case in REFUSED}) == len(REFUSED)


def test_listening_socket_is_group_only(tmp_path: Path) -> None:
    """The listening socket is 0660 from the start (bound under umask 0177, then opened to its group)."""
    import grp

    from gatekeeper.proxy.server import listening_socket

    sock = listening_socket(str(tmp_path / "s" / "p.sock"), grp.getgrgid(0).gr_name)
    try:
        assert (tmp_path / "s" / "p.sock").stat().st_mode & 0o777 == 0o660
    finally:
        sock.close()


def test_listening_socket_accepts_from_the_moment_its_path_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sees the socket's path is queued, never refused: the socket listens before
    it is opened to its group (a test or a ForceCommand racing the proxy's start met
    ECONNREFUSED between bind and listen). The probe connects when the path is first handed
    to chown, the earliest moment anyone but root could find it usable."""
    import grp
    import socket

    from gatekeeper.proxy import server

    path = str(tmp_path / "s" / "p.sock")
    seen: list[str] = []
    real_chown = server.os.chown

    def probing_chown(target: str, uid: int, gid: int) -> None:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(target)
            seen.append("queued")
        except ConnectionRefusedError:
            seen.append("refused")
        finally:
            probe.close()
        real_chown(target, uid, gid)

    monkeypatch.setattr(server.os, "chown", probing_chown)
    sock = server.listening_socket(path, grp.getgrgid(0).gr_name)
    sock.close()
    assert seen == ["queued"]
