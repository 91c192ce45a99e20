"""Engine steps around an allowed command (gatekeeper.steps), against a fake engine.

* volume-create: the new volume is created with the owner label and read back;
  one that appeared meanwhile, not the agent's, stops the command.
* pull-record: after a pull, the tag it put on the image is recorded as pulled by
  the profile, in a volume whose gatekeeper.* labels only gatekeeper can set; a
  tag that existed before the pull, or another tag on the image (the operator's,
  even one added during the pull), never is.
* pull-forget: once the image is gone, its records go.
* the pin: the record carries the image's LastTagTime right after gatekeeper re-applied the
  pulled tag (a pull by digest: a random tag put on and removed at once); the profile's
  other records of the image that pinned it as it was carry over, stale ones go.

The e2e stack has no registry to pull from, so the record logic is tested here;
tests/e2e/test_namespaces.py shows a record letting the agent rmi the image.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from gatekeeper import steps

OWNER = "gatekeeper.owner"
BY, IMAGE, TAG, PIN = ("gatekeeper.pulled-by", "gatekeeper.pulled-image", "gatekeeper.pulled-tag",
                       "gatekeeper.pulled-tag-time")
X, Y = "sha256:" + "1" * 64, "sha256:" + "2" * 64


class Fake:
    def __init__(self, images: dict[str, str], volumes: dict[str, dict[str, str]] | None = None) -> None:
        self.images = dict(images)  # tag -> ID
        self.tagged: dict[str, str] = {}  # ID -> LastTagTime, set anew by every tag (none: the zero time)
        self.clock = iter(f"2026-11-30T12:00:{n:02d}.5Z" for n in range(60))
        self.volumes = dict(volumes or {})  # name -> labels
        self.calls: list[list[str]] = []

    def __call__(self, policy: object, args: list[str]) -> tuple[int, str, str]:
        self.calls.append(args)
        handler = getattr(self, "_".join(args[:2]).replace("-", "_"), None)
        return handler(args) if handler else (1, "", "unexpected")

    def volume_create(self, args: list[str]) -> tuple[int, str, str]:
        name = args[-1]
        labels = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--label")
        self.volumes.setdefault(name, labels)  # docker: an existing name is a no-op
        return 0, name + "\n", ""

    def volume_inspect(self, args: list[str]) -> tuple[int, str, str]:
        name = args[-1]
        if name not in self.volumes:
            return 1, "\n", "no such volume"
        return 0, f"{name}\tlocal\tnull\t{json.dumps(self.volumes[name])}\n", ""

    def image_ls(self, args: list[str]) -> tuple[int, str, str]:
        return 0, "".join(f"{i}\t{t}\n" for t, i in self.images.items()), ""

    def image_inspect(self, args: list[str]) -> tuple[int, str, str]:
        ref = args[-1]
        ident = self.images.get(ref) or (ref if ref in self.images.values() else None)
        if ident is None:
            return 1, "", "No such image"
        tags = [t for t, i in self.images.items() if i == ident and "@" not in t]
        tagged = json.dumps(self.tagged.get(ident, "0001-01-01T00:00:00Z"))
        return 0, f"{ident}\t{json.dumps(tags)}\t{tagged}\n", ""

    def image_tag(self, args: list[str]) -> tuple[int, str, str]:
        source, target = args[-2:]
        ident = self.images.get(source)
        if ident is None:
            return 1, "", "No such image"
        self.images[target] = ident
        self.tagged[ident] = next(self.clock)
        return 0, "", ""

    def image_rm(self, args: list[str]) -> tuple[int, str, str]:
        return (0, "Untagged\n", "") if self.images.pop(args[-1], None) else (1, "", "No such image")

    def volume_ls(self, args: list[str]) -> tuple[int, str, str]:
        want = dict(a.removeprefix("label=").split("=", 1) for a in args if a.startswith("label="))
        hits = [n for n, lab in self.volumes.items() if all(lab.get(k) == v for k, v in want.items())]
        if "--format" in args:  # steps.pull_records: name, tag, pin
            return 0, "".join(f"{n}\t{self.volumes[n].get(TAG, '')}\t{self.volumes[n].get(PIN, '')}\n"
                              for n in hits), ""
        return 0, "".join(n + "\n" for n in hits), ""

    def volume_rm(self, args: list[str]) -> tuple[int, str, str]:
        for name in args[3:]:
            self.volumes.pop(name, None)
        return 0, "", ""


POLICY = SimpleNamespace(profile="default")


def records(fake: Fake) -> set[tuple[str, str, str]]:
    return {(lab["gatekeeper.pulled-by"], lab["gatekeeper.pulled-image"], lab["gatekeeper.pulled-tag"])
            for lab in fake.volumes.values() if "gatekeeper.pulled-by" in lab}


def pull(fake: Fake, monkeypatch: pytest.MonkeyPatch, ref: str, when: str,
         result: dict[str, str]) -> list[str]:
    monkeypatch.setattr(steps, "docker", fake)
    plan = [("pull-record", ref, when)]
    before = steps.snapshot_before(POLICY, plan)
    fake.images.update(result)  # what the pull did
    return steps.run_afterwards(POLICY, plan, before)


def test_new_volume_is_created_with_the_owner_label(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({})
    monkeypatch.setattr(steps, "docker", fake)
    steps.run_prepared(POLICY, [("volume-create", "pgdata")])
    assert fake.volumes["pgdata"] == {OWNER: "default"}
    assert fake.calls[0] == ["volume", "create", "--label", f"{OWNER}=default", "--", "pgdata"]


def test_a_volume_that_appeared_meanwhile_stops_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({}, {"pgdata": {}})  # the operator made it after the decision
    monkeypatch.setattr(steps, "docker", fake)
    with pytest.raises(steps.StepFailed, match="not yours"):
        steps.run_prepared(POLICY, [("volume-create", "pgdata")])


def test_a_new_tag_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({})
    assert pull(fake, monkeypatch, "alpine:3", "new", {"alpine:3": X}) == []
    assert records(fake) == {("default", X, "alpine:3")}
    assert all(name.startswith("gatekeeper-pull-") for name in fake.volumes)


def test_the_operators_other_tag_of_the_same_image_is_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({"myalpine:prod": X})
    pull(fake, monkeypatch, "alpine:3", "new", {"alpine:3": X})
    assert records(fake) == {("default", X, "alpine:3")}


def test_a_tag_the_operator_adds_during_the_pull_is_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({})
    pull(fake, monkeypatch, "alpine:3", "new", {"alpine:3": X, "op-copy:1": X})
    assert records(fake) == {("default", X, "alpine:3")}


def test_a_pull_by_digest_is_recorded_without_a_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({})
    ref = "alpine@sha256:" + "9" * 64
    monkeypatch.setattr(steps, "docker", fake)
    fake.images[ref] = X  # the fake resolves the digest reference like a tag
    steps.record_pull(POLICY, ref, "new", {})
    assert records(fake) == {("default", X, "")}
    [labels] = fake.volumes.values()
    assert labels[PIN] == fake.tagged[X] != ""
    assert list(fake.images) == [ref], "the pin's own tag is gone"
    [tag_call] = [c for c in fake.calls if c[:2] == ["image", "tag"]]
    assert tag_call[-1].startswith(steps.PIN_TAG_PREFIX)


def test_a_tag_that_appeared_before_the_pull_is_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decided as new, but the operator pulled it in between: not the agent's."""
    fake = Fake({"alpine:3": X})
    pull(fake, monkeypatch, "alpine:3", "new", {"alpine:3": X})
    assert records(fake) == set()


def test_a_pull_over_an_owned_tag_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({"app:1": Y})
    pull(fake, monkeypatch, "app:1", "owned", {"app:1": X})
    assert records(fake) == {("default", X, "app:1")}


def test_forget_once_the_image_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({"alpine:3": X})
    monkeypatch.setattr(steps, "docker", fake)
    steps.record_pull(POLICY, "alpine:3", "owned", {})
    steps.run_afterwards(POLICY, [("pull-forget", X)], {})
    assert records(fake), "kept while the image is there"
    del fake.images["alpine:3"]
    steps.run_afterwards(POLICY, [("pull-forget", X)], {})
    assert records(fake) == set()


def test_the_record_pins_the_last_tag_time_of_its_own_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    """gatekeeper re-applies the pulled tag (the image it names keeps it) and records the
    LastTagTime that gave the image; the record's name has the pin in it."""
    fake = Fake({})
    pull(fake, monkeypatch, "alpine:3", "new", {"alpine:3": X})
    assert ["image", "tag", "--", "alpine:3", "alpine:3"] in fake.calls
    [(name, labels)] = fake.volumes.items()
    assert labels[PIN] == fake.tagged[X] != ""
    assert name == steps.record_name("default", X, "alpine:3", labels[PIN])
    assert fake.images == {"alpine:3": X}


def test_an_engine_without_last_tag_time_gets_no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({})
    fake.clock = iter(["0001-01-01T00:00:00Z"] * 3)
    assert pull(fake, monkeypatch, "alpine:3", "new", {"alpine:3": X}) == [
        "cannot record the pull of 'alpine:3': the engine gives the image no LastTagTime"]
    assert records(fake) == set()


def test_other_records_carry_over_and_stale_ones_go(monkeypatch: pytest.MonkeyPatch) -> None:
    t0, t1 = "2026-11-30T10:00:00Z", "2026-11-30T10:00:01Z"
    mine = {BY: "default", IMAGE: X}
    fake = Fake({"app:1": X, "app-copy:1": X}, {
        steps.record_name("default", X, "app-copy:1", t1): {**mine, TAG: "app-copy:1", PIN: t1},  # valid
        steps.record_name("default", X, "app:1", t0): {**mine, TAG: "app:1", PIN: t0},  # stale
        "gatekeeper-pull-old": {**mine, TAG: "app:1"},  # from before the pin
    })
    fake.tagged[X] = t1
    pull(fake, monkeypatch, "app:1", "owned", {})
    now = fake.tagged[X]
    # app-copy:1's record pinned the image as it was: made anew; every old pin can never count again
    assert {(lab[TAG], lab[PIN]) for lab in fake.volumes.values()} == {("app:1", now), ("app-copy:1", now)}


@pytest.mark.parametrize(("answer", "pin"), [
    ("2026-11-30T10:00:00.5Z", "2026-11-30T10:00:00.5Z"),  # the API's JSON string
    ('"2026-11-30T10:00:00.5Z"\n', "2026-11-30T10:00:00.5Z"),  # the CLI's {{json .Metadata.LastTagTime}}
    ('"0001-01-01T00:00:00Z"', ""),  # Go's zero time: no tag was ever put on the image
    ("0001-01-01T00:00:00Z", ""),
    ("null", ""), ("<no value>", ""), ("", ""), (None, ""), ('""', ""),
])
def test_a_last_tag_time_pins_only_a_time(answer: object, pin: str) -> None:
    from gatekeeper.owner import tag_time_pin

    assert tag_time_pin(answer) == pin


@pytest.mark.parametrize(("record", "stale"), [
    (("gatekeeper-pull-a", X, "T1"), False),  # pins the image as it is
    (("gatekeeper-pull-a", X, "T0"), True),  # another LastTagTime: the image was tagged, or came back
    (("gatekeeper-pull-a", X, ""), True),  # made before the pin
    (("gatekeeper-pull-a", Y, "T1"), True),  # its image is gone
    (("data", Y, "T1"), False),  # not a record's name
])
def test_stale_pull_records(record: tuple[str, str, str], stale: bool) -> None:
    assert steps.stale_records([record], [], {X: "T1"}) == ([record[0]] if stale else [])


def test_stale_build_records() -> None:
    builds = [("gatekeeper-built-a", X), ("gatekeeper-built-b", Y), ("data", Y)]
    assert steps.stale_records([], builds, {X: ""}) == ["gatekeeper-built-b"]


def test_the_sweep_after_an_image_prune(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({"app:1": X}, {
        "gatekeeper-pull-valid": {BY: "default", IMAGE: X, TAG: "app:1", PIN: "2026-11-30T10:00:01Z"},
        "gatekeeper-pull-stale": {BY: "default", IMAGE: X, TAG: "app:1", PIN: "2026-11-30T10:00:00Z"},
        "gatekeeper-pull-gone": {BY: "default", IMAGE: Y, TAG: "b:1", PIN: "2026-11-30T10:00:01Z"},
        "gatekeeper-pull-alice": {BY: "alice", IMAGE: Y, TAG: "b:1", PIN: "2026-11-30T10:00:01Z"},
        "gatekeeper-built-gone": {"gatekeeper.built-by": "default", "gatekeeper.built-image": Y},
    })
    fake.tagged[X] = "2026-11-30T10:00:01Z"

    def image_inspect(args: list[str]) -> tuple[int, str, str]:
        there = [w for w in args[5:] if w in fake.images.values()]
        found = [f"{w}\t{json.dumps(fake.tagged.get(w, ''))}\n" for w in there]
        return (0 if len(found) == len(args[5:]) else 1), "".join(found), "Error: No such image: x"

    def volume_ls(args: list[str]) -> tuple[int, str, str]:
        by, _, profile = args[args.index("--filter") + 1].removeprefix("label=").partition("=")
        image_label, pin_label = [part.split('"')[1] for part in args[-1].split("\t")[1:]]
        return 0, "".join(f"{n}\t{lab.get(image_label, '')}\t{lab.get(pin_label, '')}\n"
                          for n, lab in fake.volumes.items() if lab.get(by) == profile), ""

    fake.image_inspect = image_inspect  # type: ignore[method-assign]
    fake.volume_ls = volume_ls  # type: ignore[method-assign]
    monkeypatch.setattr(steps, "docker", fake)
    assert steps.run_afterwards(POLICY, [("records-sweep",)], {}) == []
    assert sorted(fake.volumes) == ["gatekeeper-pull-alice", "gatekeeper-pull-valid"]


def test_an_image_prune_carries_the_sweep() -> None:
    from gatekeeper.decision import decide
    from gatekeeper.policy import load_policy
    from tests.fakes import StaticWorld

    decision = decide("docker image prune -f", load_policy(None), StaticWorld())
    assert decision.allowed and ("records-sweep",) in decision.afterwards, decision.reason
