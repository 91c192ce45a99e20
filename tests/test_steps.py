"""Engine steps around an allowed command (gatekeeper.steps), against a fake engine.

* volume-create: the new volume is created with the owner label and read back;
  one that appeared meanwhile, not the agent's, stops the command.
* pull-record: after a pull, the tag it put on the image is recorded as pulled by
  the profile, in a volume whose gatekeeper.* labels only gatekeeper can set; a
  tag that existed before the pull, or another tag on the image (the operator's,
  even one added during the pull), never is.
* pull-forget: once the image is gone, its records go.

The e2e stack has no registry to pull from, so the record logic is tested here;
tests/e2e/test_namespaces.py shows a record letting the agent rmi the image.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from gatekeeper import steps

OWNER = "gatekeeper.owner"
X, Y = "sha256:" + "1" * 64, "sha256:" + "2" * 64


class Fake:
    def __init__(self, images: dict[str, str], volumes: dict[str, dict[str, str]] | None = None) -> None:
        self.images = dict(images)  # tag -> ID
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
        tags = [t for t, i in self.images.items() if i == ident]
        return 0, f"{ident}\t{json.dumps(tags)}\n", ""

    def volume_ls(self, args: list[str]) -> tuple[int, str, str]:
        want = dict(a.removeprefix("label=").split("=", 1) for a in args if a.startswith("label="))
        hits = [n for n, lab in self.volumes.items() if all(lab.get(k) == v for k, v in want.items())]
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
