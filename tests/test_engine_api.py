"""Engine questions over the API socket (gatekeeper.engine_api): what is asked
there, how answers are printed (as the CLI prints them), and that every odd
answer from the socket is a failed query (the callers deny on it).

The equality with the real CLI on the real engine is tests/e2e/test_engine_api.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.engine_api import EngineError, answer_from_api, dechunk, parse_response, url_reference
from gatekeeper.engine_objects import QUERY_FORMATS
from gatekeeper.vetting.binds import CONTAINER_FORMAT
from gatekeeper.vetting.limits import HEALTH_FORMAT
from gatekeeper.vetting.volumes import VOLUME_FORMAT
from tests.fake_engine import fake_engine

WEB = {"Id": "a" * 64, "Name": "/web", "Image": "sha256:" + "b" * 64,
       "Config": {"Labels": {"gatekeeper.owner": "default", "b": "<&>"}}}
ALPINE = {"Id": "sha256:" + "b" * 64, "RepoTags": ["alpine:3"], "Config": {"Labels": None},
          "Metadata": {"LastTagTime": "2026-11-30T10:00:00.5Z"}}
DATA = {"Name": "data", "Driver": "local", "Options": None, "Labels": {"x": "1"}}
NET = {"Id": "c" * 64, "Name": "front", "Labels": {}}
HEALTHY = {"Id": "sha256:" + "d" * 64, "RepoTags": ["checked:1"],
           "Config": {"Labels": None,
                      "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000, "Retries": 3}}}
NO_CONFIG = {"Id": "sha256:" + "e" * 64, "RepoTags": ["bare:1"], "Config": None}
OBJECTS = {"containers/web": WEB, "images/alpine:3": ALPINE, "volumes/data": DATA, "networks/front": NET,
           "images/checked:1": HEALTHY, "images/bare:1": NO_CONFIG}


def ask(host: str, kind: str, template: str, *words: str) -> tuple[int, bytes, bytes] | None:
    return answer_from_api(host, [kind, "inspect", "--format", template, "--", *words], 5.0)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[str]:
    with fake_engine(tmp_path, OBJECTS) as server:
        yield f"unix://{server.server_address}"


@pytest.mark.parametrize(("kind", "word", "line"), [
    ("container", "web",
     f"{'a' * 64}\t\"/web\"\t" + '{"b":"<&>","gatekeeper.owner":"default"}' + f"\tsha256:{'b' * 64}"),
    ("image", "alpine:3", f"sha256:{'b' * 64}\t[\"alpine:3\"]\tnull\tnull\t\"2026-11-30T10:00:00.5Z\""),
    ("image", "bare:1", f"sha256:{'e' * 64}\t[\"bare:1\"]\t\tnull\tnull"),  # no Metadata
    ("volume", "data", 'data\t"data"\t{"x":"1"}'),
    ("network", "front", f"{'c' * 64}\t\"front\"\t{{}}"),
])  # fmt: skip
def test_query_lines_are_printed_as_the_cli_prints_them(engine: str, kind: str, word: str, line: str) -> None:
    assert ask(engine, kind, QUERY_FORMATS[kind], word) == (0, (line + "\n").encode(), b"")


def test_volume_driver_and_whole_container_templates(engine: str) -> None:
    assert ask(engine, "volume", VOLUME_FORMAT, "data") == (0, b'data\tlocal\tnull\t{"x":"1"}\n', b"")
    status, out, _ = ask(engine, "container", CONTAINER_FORMAT, "web")  # type: ignore[misc]
    assert status == 0 and json.loads(out) == WEB


def test_image_healthcheck_template(engine: str) -> None:
    """The health floors' question (gatekeeper.vetting.limits) without a second process:
    the image's Healthcheck as JSON, `null` without one; no Config at all is a failed
    question, as the CLI's template error is (the caller refuses)."""
    status, out, _ = ask(engine, "image", HEALTH_FORMAT, "checked:1")  # type: ignore[misc]
    assert status == 0 and json.loads(out) == HEALTHY["Config"]["Healthcheck"]  # type: ignore[index]
    assert ask(engine, "image", HEALTH_FORMAT, "alpine:3") == (0, b"null\n", b"")
    status, out, err = ask(engine, "image", HEALTH_FORMAT, "bare:1")  # type: ignore[misc]
    assert status == 1 and out == b"" and b"no Config" in err


def test_a_missing_object_prints_the_others_and_fails(engine: str) -> None:
    status, out, err = ask(engine, "container", QUERY_FORMATS["container"], "web", "gone", "web")  # type: ignore[misc]
    assert status == 1 and len(out.splitlines()) == 2
    assert err == b"Error response from daemon: No such container: gone\n"


@pytest.mark.parametrize(("host", "args"), [
    ("tcp://127.0.0.1:2375", ["container", "inspect", "--format", QUERY_FORMATS["container"], "--", "web"]),
    ("ssh://h", ["container", "inspect", "--format", QUERY_FORMATS["container"], "--", "web"]),
    ("unix://relative.sock", ["container", "inspect", "--format", QUERY_FORMATS["container"], "--", "web"]),
    ("unix:///s", ["container", "inspect", "--format", "{{.Id}}", "--", "web"]),  # a template not known
    ("unix:///s", ["container", "ls", "-a"]),
    ("unix:///s", ["container", "inspect", "--format", QUERY_FORMATS["container"], "web"]),  # no --
    ("unix:///s", ["container", "inspect", "--format", QUERY_FORMATS["container"], "--"]),  # no word
])  # fmt: skip
def test_other_questions_are_left_to_the_cli(host: str, args: list[str]) -> None:
    assert answer_from_api(host, args, 1.0) is None


@pytest.mark.parametrize(("kind", "word", "carried"), [
    ("container", "web", True), ("container", "/web", False), ("container", "a1b2", True),
    ("image", "alpine:3", True), ("image", "ghcr.io/o/app@sha256:abc", True),
    # trying to cheat: words the engine's router would clean into another endpoint, or that need escaping
    ("container", "../images/x", False), ("container", "web/../../info", False),
    ("image", "a/../../info", False),
    ("image", "a/./b", False), ("container", "//web", False), ("container", "web/", False),
    ("container", "web?all=1", False), ("container", "web#x", False), ("container", "w%2e", False),
    ("container", "w b", False), ("container", "", False), ("container", ".web", False),
    ("volume", "a/b", False), ("network", "/front", False), ("container", "x" * 513, False),
])  # fmt: skip
def test_only_plain_references_are_carried(kind: str, word: str, carried: bool) -> None:
    assert url_reference(kind, word) is carried


# ---------------------------------------------------------------- hostile or broken answers


def serve_once(path: str, answer: bytes) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            if answer:
                try:
                    conn.sendall(answer)
                except OSError:
                    return  # the client stopped reading (the oversized answer)
            if answer != b"hang":
                return
            conn.recv(1)  # until the client gives up

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}\r\n".encode() + body


BODY = json.dumps(WEB).encode()
CHUNKED = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)


@pytest.mark.parametrize("answer", [
    b"",  # the connection closed without a word
    b"hang",  # never answers (deadline)
    b"HTTP/1.0 200 OK\r\n\r\n" + BODY,  # not HTTP/1.1
    b"HTTP/1.1 200 OK\r\n" + BODY,  # no end of header
    ok(BODY, f"Content-Length: {len(BODY) + 5}\r\n"),  # truncated
    ok(BODY, "Content-Length: 5\r\n"),  # more than announced (a second response smuggled)
    ok(BODY, "Content-Length: 1\r\nContent-Length: 1\r\n"),
    ok(CHUNKED[:-5], "Transfer-Encoding: chunked\r\n"),  # no last chunk
    ok(b"zz\r\n" + BODY, "Transfer-Encoding: chunked\r\n"),
    ok(CHUNKED, "Transfer-Encoding: gzip\r\n"),
    ok(b"[1, 2]"),  # JSON but not an object
    ok(b"\xff{}"),  # not UTF-8
    ok(json.dumps({"Name": "/web"}).encode()),  # no Id
    ok(json.dumps({**WEB, "Config": "x"}).encode()),
    b"HTTP/1.1 500 Internal Server Error\r\n\r\n" + json.dumps({"message": "boom"}).encode(),
    b"HTTP/1.1 301 Moved\r\nLocation: /containers/x/json\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\n\r\n" + b"<html>",  # 404 without the engine's JSON message
    ok(b"{" + b" " * (5 << 20) + b"}"),  # oversized
])  # fmt: skip
def test_every_odd_answer_is_a_failed_query(tmp_path: Path, answer: bytes) -> None:
    path = str(tmp_path / "odd.sock")
    serve_once(path, answer)
    args = ["container", "inspect", "--format", QUERY_FORMATS["container"], "--", "web"]
    result = answer_from_api(f"unix://{path}", args, 1.0)
    assert result is not None
    status, out, err = result
    assert status == 1 and out == b"" and err.startswith(b"cannot ask the engine about container 'web'")


def test_control_a_well_formed_answer_on_the_same_server_passes(tmp_path: Path) -> None:
    for n, answer in enumerate([ok(BODY, f"Content-Length: {len(BODY)}\r\n"), ok(BODY),
                                ok(CHUNKED, "Transfer-Encoding: chunked\r\n")]):
        path = str(tmp_path / f"ok{n}.sock")
        serve_once(path, answer)
        status, out, _ = answer_from_api(f"unix://{path}", ["container", "inspect", "--format",  # type: ignore[misc]
                                         QUERY_FORMATS["container"], "--", "web"], 1.0)
        assert status == 0 and out.startswith(b"a" * 64)


def test_no_socket_is_a_failed_query(tmp_path: Path) -> None:
    status, _, err = ask(f"unix://{tmp_path}/none.sock", "container", QUERY_FORMATS["container"], "web")  # type: ignore[misc]
    assert status == 1 and b"cannot ask the engine" in err


def test_parsers_directly() -> None:
    assert dechunk(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n") == b"abcde"
    with pytest.raises(EngineError):
        dechunk(b"3\r\nabcd\r\n0\r\n\r\n")
    assert parse_response(b"HTTP/1.1 404 Not Found\r\nA: b\r\n\r\n{}") == (404, b"{}")
    with pytest.raises(EngineError):
        parse_response(b"HTTP/1.1 200 OK\r\n bad: x\r\n\r\n{}")


def test_every_owner_template_is_answered_here() -> None:
    """A template changed by its owner falls back to the CLI (safe but slow): say so."""
    from gatekeeper.engine_api import renderers

    wanted = {("volume", VOLUME_FORMAT), ("container", CONTAINER_FORMAT),
              *((kind, template) for kind, template in QUERY_FORMATS.items())}
    assert wanted <= set(renderers()), wanted - set(renderers())
