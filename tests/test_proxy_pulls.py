# A table reads best with one case a line; such lines run long.
# ruff: noqa: E501

"""Pull records at the API layer (gatekeeper.proxy.pulls, gatekeeper.proxy.images.vet_pull,
the transport's step after the answer): behind the proxy the agent's pulls are recorded
by the proxy itself, with the CLI layer's meaning (gatekeeper.steps), so that the agent
may remove an image it pulled and never one the operator also uses.

* the decision: a pull of a new tag, or over the agent's own, carries the step
  ("pull-record", REF, when); a [shared] tag and a digest the engine already has never;
  an rmi allowed because of a record carries ("pull-forget", ID);
* the step: only REF's tag on the image it names now is recorded (the operator's other
  tags on it are not), and only after a pull whose stream said it succeeded; forgetting
  waits until the image is gone;
* the pin: a record names the image object its pull tagged (gatekeeper.owner.PULLED_TAG_TIME):
  the step re-applies the tag and records the image's LastTagTime; a record counts only while
  the image has that LastTagTime, so the operator's pull of the ID and tag of the agent's
  removed pull (the record outlived it) is not the agent's to remove, re-point or use;
* the transport: the step is taken before the client sees the end of the pull's stream,
  and a step that fails is one more progress message, not a failed pull.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from gatekeeper.policy import DEFAULTS, Policy, merge
from gatekeeper.proxy import pulls
from gatekeeper.proxy.contract import ApiVerdict
from gatekeeper.proxy.vet import vet_api_request
from gatekeeper.steps import record_name
from tests import api_engine
from tests.api_engine import TAGGED, FakeEngine, cid
from tests.test_proxy_vet import request

POLICY = Policy(merge(DEFAULTS, {"shared": {"images": ["postgres:*"]}}, "test"), "test", "")
PULLED = "sha256:" + cid("3")  # alpine:latest, with a pull record of profile "default" (api_engine)
X, Y = "sha256:" + "7" * 64, "sha256:" + "8" * 64
BY, IMAGE, TAG, PIN = ("gatekeeper.pulled-by", "gatekeeper.pulled-image", "gatekeeper.pulled-tag",
                       "gatekeeper.pulled-tag-time")


def decide(method: str, target: str) -> ApiVerdict:
    return vet_api_request(request(method, target), POLICY, FakeEngine())


# ---------------------------------------------------------------- the decision


@pytest.mark.parametrize(("target", "step"), [
    ("/v1.47/images/create?fromImage=nginx&tag=1.27", ("pull-record", "nginx:1.27", "new")),
    ("/v1.47/images/create?fromImage=docker.io%2Flibrary%2Fnginx&tag=1.27", ("pull-record", "nginx:1.27", "new")),
    ("/v1.47/images/create?fromImage=10.0.0.5%3A5000%2Fteam%2Fapp&tag=2",
     ("pull-record", "10.0.0.5:5000/team/app:2", "new")),
    ("/v1.47/images/create?fromImage=myapp&tag=latest", ("pull-record", "myapp:latest", "owned")),  # owner label
    ("/v1.47/images/create?fromImage=alpine&tag=latest", ("pull-record", "alpine:latest", "owned")),  # pulled
    (f"/v1.47/images/create?fromImage=nginx&tag=sha256%3A{'9' * 64}", ("pull-record", f"nginx@sha256:{'9' * 64}", "new")),
    ("/v1.47/images/create?fromImage=postgres&tag=15", None),  # [shared]: never becomes the agent's
    (f"/v1.47/images/create?fromImage=alpine&tag=sha256%3A{cid('4')}", None),  # a digest the engine has
])
def test_a_pull_carries_its_record_step(target: str, step: tuple[str, ...] | None) -> None:
    verdict = decide("POST", target)
    assert verdict.allowed, verdict.reason
    assert verdict.afterwards == step


def test_refused_pulls_carry_no_step() -> None:
    for target in ("/v1.47/images/create?fromImage=nginx",  # every tag
                   "/v1.47/images/create?fromSrc=-&repo=x"):
        verdict = decide("POST", target)
        assert not verdict.allowed and verdict.afterwards is None


def test_rmi_of_a_pulled_image_forgets_its_records_and_of_an_owned_one_not() -> None:
    pulled = decide("DELETE", "/v1.47/images/alpine:latest")
    assert pulled.allowed and pulled.afterwards == ("pull-forget", PULLED)
    owned = decide("DELETE", "/v1.47/images/myapp:latest")
    assert owned.allowed and owned.afterwards == ("build-forget", "sha256:" + "1" * 64)  # its build records
    theirs = decide("DELETE", "/v1.47/images/postgres:15")  # control: no record, not the agent's
    assert (theirs.allowed, theirs.rule) == (False, "scope-owned")


# ---------------------------------------------------------------- the pin: a stale record counts as none

LATER = "2026-11-30T11:00:00.5Z"


def alpine_pinned(monkeypatch: pytest.MonkeyPatch, image_pin: str | None, record_pin: str | None) -> None:
    """alpine:latest (pulled by the agent, its record) with the LastTagTime `image_pin` and
    the record's pin `record_pin` (None: no such key, as before the pin)."""
    images = [dict(i) for i in api_engine.IMAGES]
    volumes = [dict(v, Labels=dict(v["Labels"])) for v in api_engine.VOLUMES]
    alpine = next(i for i in images if i["Id"] == PULLED)
    record = next(v for v in volumes if v["Labels"].get(BY))
    for obj, key, value in ((alpine, "Metadata", {"LastTagTime": image_pin}), (record["Labels"], PIN, record_pin)):
        obj.pop(key, None)
        if value is not None:
            obj[key] = value
    monkeypatch.setattr(api_engine, "IMAGES", images)
    monkeypatch.setattr(api_engine, "VOLUMES", volumes)


# (what, the image's LastTagTime, the record's pin, the rmi's / the pull's / a run's rule)
PINS = [
    ("control: the record pins the image as it is", TAGGED, TAGGED, "allowed"),
    ("the operator's image came back (or was tagged) since", LATER, TAGGED, "scope-owned"),
    ("a record from before the pin", TAGGED, None, "scope-owned"),
    ("an engine that gives no LastTagTime", None, None, "scope-owned"),
    ("... or the zero time", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "scope-owned"),
]


@pytest.mark.parametrize(("image_pin", "record_pin", "rule"), [p[1:] for p in PINS], ids=[p[0] for p in PINS])
def test_a_record_counts_only_for_the_image_it_pinned(monkeypatch: pytest.MonkeyPatch, image_pin: str | None,
                                                      record_pin: str | None, rule: str) -> None:
    alpine_pinned(monkeypatch, image_pin, record_pin)
    removed = decide("DELETE", "/v1.47/images/alpine:latest")
    assert (removed.allowed, removed.rule) == (rule == "allowed", rule), removed.reason
    assert removed.afterwards == (("pull-forget", PULLED) if removed.allowed else None)
    pulled = decide("POST", "/v1.47/images/create?fromImage=alpine&tag=latest")
    assert (pulled.allowed, pulled.rule) == ((True, "allowed") if rule == "allowed" else (False, "foreign-tag"))
    built = decide("POST", "/v1.47/build?t=alpine%3Alatest")
    assert built.rule != "foreign-tag" if rule == "allowed" else built.rule == "foreign-tag", built.reason


# ---------------------------------------------------------------- the steps

T0, T1, T2 = "2026-11-30T10:00:00Z", "2026-11-30T10:00:01Z", "2026-11-30T10:00:02Z"


class Engine:
    """The engine as the steps see it: images by tag or ID (each with its LastTagTime, set anew
    by every tag put on it, as the engine does), volumes by name."""

    def __init__(self, images: dict[str, str], tagged: dict[str, str] | None = None) -> None:
        self.images = dict(images)  # tag -> ID
        self.tagged = dict(tagged or {})  # ID -> LastTagTime (none: never tagged, Go's zero time)
        self.clock = iter(f"2026-11-30T12:00:{n:02d}.5Z" for n in range(60))
        self.volumes: dict[str, dict[str, str]] = {}
        self.refuse_volumes = False
        self.refuse_tags = False

    def get_json(self, target: str) -> tuple[int, object]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path == "/volumes":
            wanted = dict(item.split("=", 1) for item in json.loads(parse_qs(parts.query)["filters"][0])["label"])
            hits = [{"Name": n, "Labels": lab} for n, lab in self.volumes.items()
                    if all(lab.get(k) == v for k, v in wanted.items())]
            return 200, {"Volumes": hits}
        ref = path.removeprefix("/images/").removesuffix("/json")
        ident = self.images.get(ref) or (ref if ref in self.images.values() else None)
        if ident is None:
            return 404, {"message": f"No such image: {ref}"}
        return 200, {"Id": ident, "RepoTags": [t for t, i in self.images.items() if i == ident and "@" not in t],
                     "Metadata": {"LastTagTime": self.tagged.get(ident, "0001-01-01T00:00:00Z")}}

    def tag_image(self, name: str, repository: str, tag: str) -> tuple[int, object]:
        ident = self.images.get(name) or (name if name in self.images.values() else None)
        if ident is None or self.refuse_tags:
            return 404, {"message": "no such image"}
        self.images[f"{repository}:{tag}"] = ident
        self.tagged[ident] = next(self.clock)
        return 201, None

    def remove_image(self, name: str) -> tuple[int, object]:
        return (200, [{"Untagged": name}]) if self.images.pop(name, None) else (404, {"message": "no such"})

    def create_volume(self, name: str, labels: dict[str, str]) -> tuple[int, object]:
        if self.refuse_volumes:
            return 500, {"message": "no"}
        self.volumes.setdefault(name, dict(labels))
        return 201, {"Name": name, "Labels": self.volumes[name]}

    def remove_volume(self, name: str) -> tuple[int, object]:
        return (204, None) if self.volumes.pop(name, None) is not None else (404, {"message": "no such"})


def records(engine: Engine) -> set[tuple[str, str, str]]:
    return {(lab[BY], lab[IMAGE], lab[TAG]) for lab in engine.volumes.values()}


def pins(engine: Engine) -> set[tuple[str, str, str]]:
    """(tag, pin, the image's LastTagTime now) of every record."""
    return {(lab[TAG], lab.get(PIN, ""), engine.tagged.get(lab[IMAGE], "")) for lab in engine.volumes.values()}


def test_only_the_pulled_tag_is_recorded() -> None:
    """The operator's tag on the same image (pulled before, or added during the pull) is not
    the agent's: the image then carries a tag without the agent's record."""
    engine = Engine({"op:1": X, "alpine:3": X})
    assert pulls.take_step(engine, "default", ("pull-record", "alpine:3", "new")) is None
    assert records(engine) == {("default", X, "alpine:3")}
    [(_, pin, now)] = pins(engine)
    assert pin == now and pin.startswith("2026-"), "the tag re-applied: the record pins its LastTagTime"
    assert list(engine.volumes) == [record_name("default", X, "alpine:3", pin)]  # the CLI layer's name
    assert sorted(engine.images) == ["alpine:3", "op:1"]  # no tag moved


def test_a_pull_by_digest_is_recorded_without_a_tag() -> None:
    """No tag to re-apply: a random one put on the image and removed at once sets its LastTagTime."""
    ref = f"alpine@sha256:{'9' * 64}"
    engine = Engine({ref: X})
    assert pulls.take_step(engine, "default", ("pull-record", ref, "new")) is None
    assert records(engine) == {("default", X, "")}
    [(_, pin, now)] = pins(engine)
    assert pin == now and pin.startswith("2026-")
    assert list(engine.images) == [ref], "the pin's own tag is gone"


def test_a_record_that_cannot_be_made_is_a_warning() -> None:
    gone = Engine({})
    assert "not there" in str(pulls.take_step(gone, "default", ("pull-record", "alpine:3", "new")))
    moved = Engine({"alpine:3@x": X})
    assert pulls.take_step(moved, "default", ("pull-record", "alpine:3", "new")) is not None
    refused = Engine({"alpine:3": X})
    refused.refuse_volumes = True
    assert pulls.take_step(refused, "default", ("pull-record", "alpine:3", "new")) is not None
    untagged = Engine({"alpine:3": X})
    untagged.refuse_tags = True
    assert "could not be tagged" in str(pulls.take_step(untagged, "default", ("pull-record", "alpine:3", "new")))
    assert records(gone) == records(moved) == records(refused) == records(untagged) == set()


def test_an_engine_without_last_tag_time_gets_no_record() -> None:
    """An engine whose tag sets no LastTagTime (Go's zero time, or none): no record would pin
    anything, so none is made (fail closed: the agent cannot remove that pull)."""
    engine = Engine({"alpine:3": X})
    engine.clock = iter(["0001-01-01T00:00:00Z"] * 3)
    assert "no LastTagTime" in str(pulls.take_step(engine, "default", ("pull-record", "alpine:3", "new")))
    assert records(engine) == set()


def test_the_agents_other_records_of_the_image_carry_over_and_stale_ones_go() -> None:
    """A pull re-tags the image (a new LastTagTime): the agent's records that pinned it as it was
    are made anew with the new pin; records that pinned it otherwise (an image removed since,
    a record from before the pin) can never count again and are removed."""
    engine = Engine({"alpine:3": X, "alpine-copy:3": X, "other:1": Y}, {X: T1, Y: T0})
    labels = {BY: "default", IMAGE: X}
    engine.volumes = {
        record_name("default", X, "alpine-copy:3", T1): {**labels, TAG: "alpine-copy:3", PIN: T1},  # valid now
        record_name("default", X, "alpine:3", T0): {**labels, TAG: "alpine:3", PIN: T0},  # stale
        "gatekeeper-pull-old": {**labels, TAG: "alpine:3"},  # from before the pin
        record_name("alice", X, "alpine:3", T1): {BY: "alice", IMAGE: X, TAG: "alpine:3", PIN: T1},  # another's
        record_name("default", Y, "other:1", T0): {BY: "default", IMAGE: Y, TAG: "other:1", PIN: T0},
    }
    assert pulls.take_step(engine, "default", ("pull-record", "alpine:3", "owned")) is None
    now = engine.tagged[X]
    assert now not in (T0, T1)
    assert pins(engine) == {("alpine:3", now, now), ("alpine-copy:3", now, now), ("alpine:3", T1, now),
                            ("other:1", T0, T0)}
    assert {lab[BY] for lab in engine.volumes.values() if lab.get(PIN) == T1} == {"alice"}  # not this profile's to sweep


def test_a_pull_that_moved_the_tag_carries_nothing_over() -> None:
    """The image the tag names after the pull is another: the old image's records stay its own."""
    engine = Engine({"alpine:3": Y, "alpine-copy:3": Y}, {Y: T1})
    engine.volumes = {record_name("default", Y, "alpine-copy:3", T1): {BY: "default", IMAGE: Y, TAG: "alpine-copy:3", PIN: T1}}
    original = engine.get_json
    calls = iter(range(100))

    def moved_by_the_pull(target: str) -> tuple[int, object]:
        if target.startswith("/images/") and next(calls) == 0:
            return 200, {"Id": X, "RepoTags": ["alpine:3"], "Metadata": {"LastTagTime": T1}}  # before the pin
        return original(target)

    engine.get_json = moved_by_the_pull  # type: ignore[method-assign]
    assert pulls.take_step(engine, "default", ("pull-record", "alpine:3", "owned")) is None
    assert {tag for tag, pin, now in pins(engine) if pin == now} == {"alpine:3"}


def test_records_are_forgotten_once_the_image_is_gone() -> None:
    engine = Engine({"alpine:3": X, "other:1": Y})
    pulls.take_step(engine, "default", ("pull-record", "alpine:3", "new"))
    pulls.take_step(engine, "default", ("pull-record", "other:1", "new"))
    pulls.take_step(engine, "alice", ("pull-record", "alpine:3", "new"))
    assert pulls.take_step(engine, "default", ("pull-forget", X)) is None
    assert len(records(engine)) == 3, "kept while the image is there"
    del engine.images["alpine:3"]
    assert pulls.take_step(engine, "default", ("pull-forget", X)) is None
    assert records(engine) == {("default", Y, "other:1"), ("alice", X, "alpine:3")}


@pytest.mark.parametrize(("tail", "succeeded"), [
    (b'{"status":"Digest: sha256:ab"}\r\n{"status":"Status: Downloaded newer image for a:1"}\r\n', True),
    (b'{"status":"Status: Image is up to date for a:1"}\r\n', True),
    (b'{"status":"Pulling fs layer","id":"x"}\r\n', False),  # cut short
    (b'{"status":"Status: Downloaded"}\r\n{"errorDetail":{"message":"x"},"error":"x"}\r\n', False),
    (b"", False),
])
def test_only_a_stream_that_says_it_succeeded_is_recorded(tail: bytes, succeeded: bool) -> None:
    assert pulls.pull_succeeded(tail) is succeeded


# ---------------------------------------------------------------- the transport


PULL_STREAM = [b'{"status":"Pulling from team/app","id":"1"}\r\n',
               b'{"status":"Status: Downloaded newer image for app:1"}\r\n']


def chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def relay_a_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: list[bytes],
                 warning: str | None = None) -> tuple[bytes, list[Any]]:
    """A pull through the proxy's transport against the harness engine; the step recorded
    with what the client had received when it was taken."""
    from gatekeeper.proxy import server
    from tests import proxy_harness

    taken: list[Any] = []
    body = chunked(parts)
    received = bytearray()

    def take_step(engine: object, profile: str, step: tuple[str, ...]) -> str | None:
        import time

        deadline = time.monotonic() + 5  # what the proxy sent before the step reaches the client
        while parts[-1] not in received and time.monotonic() < deadline:
            time.sleep(0.01)
        taken.append((profile, step, bytes(received)))
        return warning

    monkeypatch.setattr(server.pulls, "take_step", take_step)

    def decide(request, policy, engine):  # type: ignore[no-untyped-def]
        return ApiVerdict(True, "allowed", "", "image.pull", afterwards=("pull-record", "app:1", "new"))

    async def answer(conn, reader, writer, path, target, headers, request_body):  # type: ignore[no-untyped-def]
        import asyncio

        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the head alone first, as the engine sends it before the progress
        writer.write(body)
        await writer.drain()
        return True

    with proxy_harness.running(tmp_path) as proxy:
        proxy.proxy.decide = decide
        proxy.engine.answer = answer  # type: ignore[method-assign]
        import socket

        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(proxy.listen)
            sock.sendall(b"POST /v1.47/images/create?fromImage=app&tag=1 HTTP/1.1\r\nHost: d\r\n"
                         b"Content-Length: 0\r\n\r\n")
            while not received.endswith(b"0\r\n\r\n"):
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        records = proxy.records()
    return bytes(received), [taken, records]


def test_the_record_is_made_before_the_client_sees_the_end(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    received, (taken, records) = relay_a_pull(tmp_path, monkeypatch, PULL_STREAM)
    assert received.endswith(chunked(PULL_STREAM))  # the stream relayed as the engine sent it
    [(_profile, step, seen)] = taken
    assert step == ("pull-record", "app:1", "new")
    assert PULL_STREAM[-1] in seen and not seen.endswith(b"0\r\n\r\n")
    assert records[-1]["steps"] == [["pull-record", "app:1", "new"]]


def test_a_failed_pull_is_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = [PULL_STREAM[0], b'{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}\r\n']
    received, (taken, _) = relay_a_pull(tmp_path, monkeypatch, failed)
    assert received.endswith(chunked(failed))
    assert taken == []


def test_a_step_that_fails_is_one_more_progress_message(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    received, (taken, _) = relay_a_pull(tmp_path, monkeypatch, PULL_STREAM, warning="cannot record")
    assert len(taken) == 1
    assert b'{"status": "gatekeeper: warning: cannot record"}' in received
    assert received.endswith(b"0\r\n\r\n")


# ---------------------------------------------------------------- the sweep after an image prune


def test_an_image_prune_sweeps_the_records_afterwards() -> None:
    verdict = decide("POST", "/v1.47/images/prune?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D")
    assert verdict.allowed and verdict.afterwards == ("records-sweep",)


def test_the_sweep_removes_only_records_that_can_never_count_again() -> None:
    """Of this profile's records: a pull record whose image is gone, pins another LastTagTime or
    none, and a build record whose image is gone go; the rest stay, and other profiles' too."""
    gone = "sha256:" + "9" * 64
    engine = Engine({"app:1": X, "other:1": Y}, {X: T1, Y: T1})
    pull = {BY: "default", TAG: "app:1"}
    engine.volumes = {
        "gatekeeper-pull-valid": {**pull, IMAGE: X, PIN: T1},
        "gatekeeper-pull-moved": {**pull, IMAGE: X, PIN: T0},
        "gatekeeper-pull-unpinned": {**pull, IMAGE: Y},
        "gatekeeper-pull-gone": {**pull, IMAGE: gone, PIN: T1},
        "gatekeeper-pull-alice": {**pull, BY: "alice", IMAGE: gone, PIN: T1},
        "gatekeeper-built-kept": {"gatekeeper.built-by": "default", "gatekeeper.built-image": Y},
        "gatekeeper-built-gone": {"gatekeeper.built-by": "default", "gatekeeper.built-image": gone},
        "data": {BY: "default", IMAGE: gone, PIN: T1},  # not a record's name: never removed
    }
    assert pulls.take_step(engine, "default", ("records-sweep",)) is None
    assert sorted(engine.volumes) == ["data", "gatekeeper-built-kept", "gatekeeper-pull-alice", "gatekeeper-pull-valid"]


def test_an_engine_that_cannot_say_sweeps_nothing() -> None:
    engine = Engine({}, {})
    engine.volumes = {"gatekeeper-pull-gone": {BY: "default", IMAGE: X, TAG: "a:1", PIN: T1}}
    original = engine.get_json
    engine.get_json = lambda target: (500, {"message": "x"}) if target.startswith("/images/") else original(target)  # type: ignore[method-assign]
    assert pulls.take_step(engine, "default", ("records-sweep",)) is not None
    assert list(engine.volumes) == ["gatekeeper-pull-gone"]
