"""Engine listings over the API socket (gatekeeper.engine_listing): which `ls`
questions are answered there, the request sent (filters as the CLI sends them),
how rows are printed (as the CLI prints them), and that odd answers are failed
queries. Equality with the real CLI on the real engine: tests/e2e/test_engine_api.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from gatekeeper.engine_api import answer_from_api
from gatekeeper.engine_listing import parse_listing
from gatekeeper.vetting.binds import OWNED_CONTAINERS
from gatekeeper.vetting.ownership import OWNED_LISTINGS
from gatekeeper.vetting.running import RUNNING_FORMAT
from tests.fake_engine import FakeEngine, fake_engine
from tests.test_engine_api import ok, serve_once

WEB = {"Id": "a" * 64, "Names": ["/web", "/db/web-alias"], "Labels": {
    "gatekeeper.owner": "default", "gatekeeper.start": "t1", "com.docker.compose.project": "app"}}
LINKED = {"Id": "b" * 64, "Names": ["/db/alias", "/db"], "Labels": None}
OBJECTS: dict[str, object] = {
    "containers": [WEB, LINKED],
    "volumes": {"Volumes": [{"Name": "data", "Labels": {"gatekeeper.pulled-tag": "alpine:3"}},
                            {"Name": "scratch", "Labels": None}], "Warnings": None},
    "networks": [{"Id": "c" * 64, "Name": "front", "Labels": {}}],
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeEngine]:
    with fake_engine(tmp_path, OBJECTS) as server:  # type: ignore[arg-type]
        yield server


def ask(server: FakeEngine, *args: str) -> tuple[int, bytes, bytes] | None:
    return answer_from_api(f"unix://{server.server_address}", list(args), 5.0)


@pytest.mark.parametrize(("args", "printed"), [
    (OWNED_CONTAINERS, f"{'a' * 64}\n{'b' * 64}\n"),
    (["container", "ls", "-q"], f"{'a' * 12}\n{'b' * 12}\n"),
    (["container", "ls", "--filter", "label=gatekeeper.owner=default", "--format", RUNNING_FORMAT],
     "t1\tapp\n\t\n"),
    # {{.Names}}: truncated, the first name that is not a link; --no-trunc, all of them
    (["container", "ls", "-a", "--format", "{{.Names}}"], "web\ndb\n"),
    (["container", "ls", "-a", "--no-trunc", "--format", "{{.Names}}"], "web,db/web-alias\ndb/alias,db\n"),
    (["volume", "ls", "--format", "{{.Name}}"], "data\nscratch\n"),
    (["volume", "ls", "-q"], "data\nscratch\n"),
    (["volume", "ls", "--format", '{{.Label "gatekeeper.pulled-tag"}}|'], "alpine:3|\n|\n"),
    (["network", "ls", "--format", "{{.Name}}"], "front\n"),
    (["network", "ls", "-q", "--no-trunc"], "c" * 64 + "\n"),
    (["network", "ls", "-q"], "c" * 12 + "\n"),
])  # fmt: skip
def test_listings_are_printed_as_the_cli_prints_them(engine: FakeEngine, args: list[str],
                                                      printed: str) -> None:
    assert ask(engine, *args) == (0, printed.encode(), b"")


def test_filters_are_sent_as_the_cli_sends_them(engine: FakeEngine) -> None:
    ask(engine, "container", "ls", "-a", "-q", "--no-trunc", "--filter", "label=gatekeeper.owner=ci/bot@x",
        "--filter", "label=com.docker.compose.project=app")
    request = urlsplit(engine.requests[-1].split(" ", 1)[1])
    assert request.path == "/containers/json"
    query = parse_qs(request.query)
    assert query["all"] == ["1"]
    assert json.loads(query["filters"][0]) == {
        "label": {"gatekeeper.owner=ci/bot@x": True, "com.docker.compose.project=app": True}}
    ask(engine, "container", "ls", "-q")
    assert engine.requests[-1] == "GET /containers/json"  # not all: running only


def test_every_listing_the_vetters_ask_is_answered_here() -> None:
    """A listing changed by its owner falls back to the CLI (safe but a second process): say so."""
    owner = "--filter", "label=gatekeeper.owner=default"
    project = "--filter", "label=com.docker.compose.project=p"
    asked = [
        OWNED_CONTAINERS,
        ["container", "ls", "--no-trunc", *owner, "--format", RUNNING_FORMAT],
        ["container", "ls", "-a", "-q", "--no-trunc", *owner, *project],
        ["container", "ls", "-a", "-q", "--no-trunc", *project],
        *([*listing[:-2], *owner, *listing[-2:]] for kind, listing in OWNED_LISTINGS.items()
          if kind != "image"),
    ]
    assert [args for args in asked if parse_listing(args) is None] == []


@pytest.mark.parametrize("args", [
    ["container", "ls"],  # the table layout
    ["container", "ls", "-q", "--format", "{{.ID}}"],  # both: the CLI warns and picks one
    ["container", "ls", "--format", "{{.Image}}"],  # a field not known here
    ["container", "ls", "--format", "{{json .}}"],
    ["container", "ls", "--format", "{{.Label \"a\" | printf}}"],
    ["container", "ls", "--format", "{{.ID}}{{"],
    ["container", "ls", "--format", "{{.ID}}.{{.Names}}"],  # a literal not in the plain set
    ["container", "ls", "-q", "--filter", "status=running"],  # a filter other than label
    ["container", "ls", "-q", "--filter", "label==x"],
    ["container", "ls", "-q", "--filter", "label=a b"],
    ["container", "ls", "-q", "-q"],
    ["container", "ls", "-q", "--filter"],
    ["volume", "ls", "-a", "-q"],  # not a volume ls flag
    ["network", "ls", "--format", "{{.Names}}"],
    ["image", "ls", "-q"],  # images stay with the CLI
    ["container", "ps", "-q"],
])  # fmt: skip
def test_other_listings_are_left_to_the_cli(args: list[str]) -> None:
    assert parse_listing(args) is None
    assert answer_from_api("unix:///nonexistent.sock", args, 1.0) is None


@pytest.mark.parametrize("answer", [
    b"",
    ok(b"{}"),  # not a list
    ok(b"[1]"),
    ok(json.dumps([{"Names": ["/x"]}]).encode()),  # no Id
    ok(json.dumps([{"Id": "x", "Names": "/x"}]).encode()),  # Names not a list
    ok(json.dumps([{"Id": "x", "Names": ["/x"], "Labels": {"gatekeeper.start": 1}}]).encode()),
    b"HTTP/1.1 500 Internal Server Error\r\n\r\n" + json.dumps({"message": "boom"}).encode(),
    b"HTTP/1.1 404 Not Found\r\n\r\n{}",
])  # fmt: skip
def test_every_odd_listing_is_a_failed_query(tmp_path: Path, answer: bytes) -> None:
    path = str(tmp_path / "odd.sock")
    serve_once(path, answer)
    args = ["container", "ls", "-a", "--format", '{{.ID}}\t{{.Names}}\t{{.Label "gatekeeper.start"}}']
    result = answer_from_api(f"unix://{path}", args, 1.0)
    assert result is not None
    status, out, err = result
    assert status == 1 and out == b"" and err.startswith(b"cannot list the engine's containers")


def test_control_a_well_formed_listing_on_the_same_server_passes(tmp_path: Path) -> None:
    path = str(tmp_path / "ok.sock")
    serve_once(path, ok(json.dumps([WEB]).encode()))
    args = ["container", "ls", "-a", "--format", '{{.ID}}\t{{.Names}}\t{{.Label "gatekeeper.start"}}']
    assert answer_from_api(f"unix://{path}", args, 1.0) == (0, b"aaaaaaaaaaaa\tweb\tt1\n", b"")


def test_a_dead_engine_is_a_failed_listing(tmp_path: Path) -> None:
    status, out, err = answer_from_api(f"unix://{tmp_path}/none.sock", OWNED_CONTAINERS, 1.0)  # type: ignore[misc]
    assert status == 1 and out == b"" and b"cannot list the engine's containers" in err
