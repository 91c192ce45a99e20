"""Pulls the agent makes, through real ssh, the real engine and a loopback registry
(tests/e2e/registry.py: no internet here), in all three layouts.

The engine cannot label a pulled image, so gatekeeper records a pull (a gatekeeper-pull-*
volume only gatekeeper can make): the CLI layer on the engine's socket (c), the proxy
behind it (a) and alone (b) (gatekeeper.proxy.pulls). With the record the agent may remove
the image it pulled; an image the operator also uses stays out of its reach:
* the operator pulled the same image under a tag of its own before: the agent's pull adds
  its tag, and its rmi is refused while the operator's tag is on the image;
* the operator tags the agent's image afterwards: likewise, and for good once the operator
  removes its tag again (the tag moved the image's LastTagTime, which the record pins:
  gatekeeper.owner.PULLED_TAG_TIME; tests/e2e/test_pull_pins.py);
* the operator pulled the same tag before: the agent's pull is refused (foreign-tag) and
  no record is made.
Controls in the same run: the operator's own pull of the tag (no record) leaves it out of
the agent's reach; once the operator's earlier tag is gone the same rmi passes, which shows
that tag was what refused it; the agent's pull over its own tag passes until the operator
tags its image.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import registry
from .stack import Stack, audit_offset, audit_records_since
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

APP, APP_COPY, OTHER = "gk-e2e-pulls/app:1", "gk-e2e-pulls/app-copy:1", "gk-e2e-pulls/other:1"
OPERATOR_TAG = "gk-e2e-pulls-operator:1"
PULLED_BY = "gatekeeper.pulled-by"


@pytest.fixture(scope="module")
def served(stack: Stack) -> Iterator[registry.Registry]:
    """APP and APP_COPY are one image (same label), OTHER another."""
    with registry.serving({APP: "app", APP_COPY: "app", OTHER: "other"}) as serving:
        clean(stack, serving)
        yield serving
        clean(stack, serving)


@pytest.fixture
def fresh(stack: Stack, served: registry.Registry) -> registry.Registry:
    clean(stack, served)
    return served


def clean(stack: Stack, served: registry.Registry) -> None:
    for reference in (APP, APP_COPY, OTHER):
        stack.docker("rmi", "-f", served.ref(reference), check=False)
    stack.docker("rmi", "-f", OPERATOR_TAG, check=False)
    for digested in (served.digest_ref(OTHER),):
        stack.docker("rmi", "-f", digested, check=False)
    for volume in records(stack):
        stack.docker("volume", "rm", "-f", volume, check=False)


def records(stack: Stack) -> list[str]:
    return stack.docker("volume", "ls", "-q", "--filter", f"label={PULLED_BY}").stdout.split()


def record_labels(stack: Stack) -> list[tuple[str, str, str]]:
    template = "|".join(f'{{{{.Label "{key}"}}}}' for key in (PULLED_BY, "gatekeeper.pulled-image",
                                                             "gatekeeper.pulled-tag"))
    out = stack.docker("volume", "ls", "--filter", f"label={PULLED_BY}", "--format", template).stdout
    return sorted(tuple(line.split("|")) for line in out.splitlines())  # type: ignore[misc]


def image_id(stack: Stack, ref: str) -> str:
    found = stack.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


def agent_ok(stack: Stack, command: str) -> None:
    result = stack.ssh(command, timeout=120)
    assert result.returncode == 0, (command, result.stderr)


def refused(stack: Stack, command: str, rule: str) -> None:
    since = audit_offset()
    assert_refused(stack, stack.ssh(command, timeout=120), since, rule=rule)


def operator_pull(stack: Stack, ref: str) -> None:
    stack.docker("pull", "-q", ref)


def test_the_agent_removes_an_image_it_pulled(stack: Stack, fresh: registry.Registry) -> None:
    app = fresh.ref(APP)
    operator_pull(stack, app)  # control: the operator's pull of the tag is no record of the agent's
    refused(stack, f"docker rmi {app}", "scope-owned")
    assert image_id(stack, app)
    stack.docker("rmi", app)
    since = audit_offset()
    agent_ok(stack, f"docker pull {app}")
    ident = image_id(stack, app)
    assert ident and record_labels(stack) == [("default", ident, app)]
    steps = [r.get("steps") for r in audit_records_since(since, layer=None) if r.get("steps")]
    assert steps, "the decision that recorded the pull lists its step"
    agent_ok(stack, f"docker rmi {app}")
    assert not image_id(stack, app)
    assert records(stack) == []  # forgotten with the image


def test_a_pull_by_digest_is_the_agents_to_remove(stack: Stack, fresh: registry.Registry) -> None:
    digested = fresh.digest_ref(OTHER)
    agent_ok(stack, f"docker pull {digested}")
    ident = image_id(stack, digested)
    assert ident and record_labels(stack) == [("default", ident, "")]
    agent_ok(stack, f"docker rmi {digested}")
    assert not image_id(stack, digested) and records(stack) == []


def test_the_operators_earlier_pull_of_the_same_image_keeps_it_out_of_reach(
        stack: Stack, fresh: registry.Registry) -> None:
    app, copy = fresh.ref(APP), fresh.ref(APP_COPY)
    operator_pull(stack, copy)  # the same image ID under the operator's tag
    agent_ok(stack, f"docker pull {app}")  # a new tag: allowed, recorded
    assert image_id(stack, app) == image_id(stack, copy)
    refused(stack, f"docker rmi {app}", "scope-owned")
    refused(stack, f"docker rmi {copy}", "scope-owned")
    refused(stack, f"docker rmi -f {image_id(stack, app)}", "scope-owned")
    assert image_id(stack, copy) and image_id(stack, app)
    stack.docker("rmi", copy)  # control: without the operator's tag the image is the agent's pull
    agent_ok(stack, f"docker rmi {app}")
    assert not image_id(stack, app)


def test_the_operators_later_tag_keeps_it_out_of_reach(stack: Stack, fresh: registry.Registry) -> None:
    app = fresh.ref(APP)
    agent_ok(stack, f"docker pull {app}")
    agent_ok(stack, f"docker pull {app}")  # control: its own tag, its record counts
    stack.docker("tag", app, OPERATOR_TAG)  # the operator starts using the agent's image
    refused(stack, f"docker rmi {app}", "scope-owned")
    refused(stack, f"docker rmi {OPERATOR_TAG}", "scope-owned")
    assert image_id(stack, OPERATOR_TAG)
    stack.docker("rmi", OPERATOR_TAG)  # the tag moved the image's LastTagTime: the record is stale
    refused(stack, f"docker rmi {app}", "scope-owned")
    refused(stack, f"docker pull {app}", "foreign-tag")
    assert image_id(stack, app)


def test_the_operators_tag_is_not_pulled_over(stack: Stack, fresh: registry.Registry) -> None:
    app = fresh.ref(APP)
    operator_pull(stack, app)
    refused(stack, f"docker pull {app}", "foreign-tag")
    assert records(stack) == []
    refused(stack, f"docker rmi {app}", "scope-owned")
    assert image_id(stack, app)
