"""A pull record outlives its image: the operator's pull of the same ID and tag is not the
agent's. Through real ssh, the real engine and a loopback registry (tests/e2e/registry.py),
in all three layouts (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone).

The agent pulls APP (recorded). The operator removes it, then pulls APP again himself: the
same image ID under the same tag, and the agent's record (never forgotten: the agent did not
remove the image) still names both. A record pins the image object its pull tagged
(gatekeeper.owner.PULLED_TAG_TIME: the image's LastTagTime right after gatekeeper re-applied
the tag), and the operator's image has another (none: the engine's pull sets none), so the
agent may neither remove it nor pull over its tag.

Control in the same run, the pin switched off for that one image: root gives the image a
LastTagTime (as gatekeeper's own step does, `docker tag APP APP`) and still the stale record
counts for nothing; then root writes the record gatekeeper would write for it (the image's
ID, the tag and that LastTagTime: the pin is all that differs from the stale one), and the
agent's rmi of the operator's image succeeds. The agent's own fresh pull is removed by it as
before (the pin its own pull made counts).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gatekeeper.steps import PIN_TAG_PREFIX, record_name

from . import registry
from .stack import Stack
from .test_pulls import PULLED_BY, agent_ok, image_id, operator_pull, records, refused

pytestmark = pytest.mark.e2e

APP, OTHER = "gk-e2e-pins/app:1", "gk-e2e-pins/other:1"
PIN = "gatekeeper.pulled-tag-time"


@pytest.fixture(scope="module")
def served(stack: Stack) -> Iterator[registry.Registry]:
    with registry.serving({APP: "pins-app", OTHER: "pins-other"}) as serving:
        clean(stack, serving)
        yield serving
        clean(stack, serving)


@pytest.fixture
def fresh(stack: Stack, served: registry.Registry) -> registry.Registry:
    clean(stack, served)
    return served


def clean(stack: Stack, served: registry.Registry) -> None:
    for reference in (APP, OTHER):
        stack.docker("rmi", "-f", served.ref(reference), check=False)
    stack.docker("rmi", "-f", served.digest_ref(OTHER), check=False)
    for volume in records(stack):
        stack.docker("volume", "rm", "-f", volume, check=False)


def last_tag_time(stack: Stack, ref: str) -> str:
    """As the engine's JSON spells it (a bare {{.Metadata.LastTagTime}} may print Go's other layout)."""
    found = stack.docker("image", "inspect", "--format", "{{json .Metadata.LastTagTime}}", ref)
    return str(json.loads(found.stdout))


def pins(stack: Stack) -> list[tuple[str, str]]:
    """(tag, pin) of every pull record."""
    template = f'{{{{.Label "gatekeeper.pulled-tag"}}}}|{{{{.Label "{PIN}"}}}}'
    out = stack.docker("volume", "ls", "--filter", f"label={PULLED_BY}", "--format", template).stdout
    return sorted(tuple(line.split("|", 1)) for line in out.splitlines())  # type: ignore[misc]


def root_record(stack: Stack, ident: str, tag: str, pin: str) -> None:
    """The record gatekeeper's step makes (gatekeeper.steps.record_pull), written by root."""
    labels = {PULLED_BY: "default", "gatekeeper.pulled-image": ident, "gatekeeper.pulled-tag": tag, PIN: pin}
    words = [w for key, value in labels.items() for w in ("--label", f"{key}={value}")]
    stack.docker("volume", "create", *words, "--", record_name("default", ident, tag, pin))


def no_pin_tags(stack: Stack) -> None:
    tags = stack.docker("image", "ls", "--format", "{{.Repository}}").stdout.split()
    assert not [tag for tag in tags if tag.startswith(PIN_TAG_PREFIX)], tags


def test_the_operators_repull_of_the_agents_removed_pull_is_not_the_agents(
        stack: Stack, fresh: registry.Registry) -> None:
    app = fresh.ref(APP)
    agent_ok(stack, f"docker pull {app}")
    ident, pinned = image_id(stack, app), last_tag_time(stack, app)
    assert pins(stack) == [(app, pinned)] and not pinned.startswith("0001-"), "the agent's pull is pinned"
    stack.docker("rmi", app)  # the operator removes the agent's image: its record stays
    operator_pull(stack, app)  # ... and pulls the same tag again: the same image ID
    assert image_id(stack, app) == ident and pins(stack) == [(app, pinned)]
    assert last_tag_time(stack, app) != pinned
    refused(stack, f"docker rmi {app}", "scope-owned")
    refused(stack, f"docker rmi -f {ident}", "scope-owned")
    refused(stack, f"docker pull {app}", "foreign-tag")
    assert image_id(stack, app) == ident
    # control, the pin switched off for this image: a LastTagTime alone makes no stale record count ...
    stack.docker("tag", app, app)
    now = last_tag_time(stack, app)
    assert now not in (pinned, "") and not now.startswith("0001-")
    refused(stack, f"docker rmi {app}", "scope-owned")
    # ... a record that pins the image as it is (ID and tag as the stale one) is all the proof is
    root_record(stack, ident, app, now)
    agent_ok(stack, f"docker rmi {app}")
    assert not image_id(stack, app)
    assert records(stack) == [], "forgotten with the image, the stale one too"


def test_the_agents_own_pulls_stay_its_own(stack: Stack, fresh: registry.Registry) -> None:
    """By tag and by digest (a tag of gatekeeper's own put on and removed at once), pulled
    again (a new pin, the old record gone), removed by the agent."""
    app, digested = fresh.ref(APP), fresh.digest_ref(OTHER)
    agent_ok(stack, f"docker pull {app}")
    first = last_tag_time(stack, app)
    agent_ok(stack, f"docker pull {app}")  # its own tag: allowed, pinned anew
    assert pins(stack) == [(app, last_tag_time(stack, app))] and last_tag_time(stack, app) != first
    agent_ok(stack, f"docker pull {digested}")
    assert ("", last_tag_time(stack, digested)) in pins(stack)
    no_pin_tags(stack)
    agent_ok(stack, f"docker rmi {app}")
    agent_ok(stack, f"docker rmi {digested}")
    assert not image_id(stack, app) and not image_id(stack, digested) and records(stack) == []


def test_an_image_prune_sweeps_the_records_that_can_never_count_again(
        stack: Stack, fresh: registry.Registry) -> None:
    """The agent's prune (its own images only) also removes its records whose image is gone;
    a record that still counts stays (control)."""
    app, other = fresh.ref(APP), fresh.ref(OTHER)
    agent_ok(stack, f"docker pull {app}")
    agent_ok(stack, f"docker pull {other}")
    stack.docker("rmi", app)  # the operator removes one: its record can never count again
    assert len(records(stack)) == 2
    agent_ok(stack, "docker image prune -f")
    assert pins(stack) == [(other, last_tag_time(stack, other))], "the stale record swept, the valid one kept"
    agent_ok(stack, f"docker rmi {other}")
    assert records(stack) == []
