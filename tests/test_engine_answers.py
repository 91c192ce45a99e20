"""What an engine's refusal means: "no such object" only when every line says so.

`engine_objects.lookup` (is there such an object now?) and `volumes.existing_volumes`
read docker's stderr with one helper, `engine_objects.only_not_found`. A stderr that
says anything else besides (the engine does not answer, permission denied) is
no answer, and the command is denied rather than treated as naming nothing.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gatekeeper import engine_objects
from gatekeeper.errors import Denied
from gatekeeper.policy import load_policy
from gatekeeper.printable import first_error, printable

NOT_FOUND_ONLY = [
    b"Error: No such container: web\n",
    b"Error response from daemon: No such image: app:1\n",
    b"Error: No such object: a\nError: No such object: b\n",
    b"Error response from daemon: network ghost not found\n",
]
# Trying to cheat: a not-found line beside another failure must not read as "none exist".
NOT_ONLY_NOT_FOUND = [
    b"",
    b"Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n",
    b"permission denied while trying to connect\nError: No such container: web\n",
    b"Error: No such container: a\nerror during connect: context deadline exceeded\n",
    # the engine's socket is missing (gatekeeper.engine_api's message): not "no such image"
    b"cannot ask the engine about image 'img': [Errno 2] No such file or directory\n",
]


@pytest.mark.parametrize("err", NOT_FOUND_ONLY)
def test_only_not_found(err: bytes) -> None:
    assert engine_objects.only_not_found(err)


@pytest.mark.parametrize("err", NOT_ONLY_NOT_FOUND)
def test_not_only_not_found(err: bytes) -> None:
    assert not engine_objects.only_not_found(err)


def context(status: int, err: bytes) -> object:
    world = SimpleNamespace(run_docker=lambda policy, args, stdin=None, timeout=60.0: (status, b"", err))
    return SimpleNamespace(policy=load_policy(None), world=world)


@pytest.mark.parametrize("err", NOT_FOUND_ONLY)
def test_lookup_of_an_object_that_does_not_exist_is_none(err: bytes) -> None:
    assert engine_objects.lookup(context(1, err), "container", "web") is None  # type: ignore[arg-type]


@pytest.mark.parametrize("err", NOT_ONLY_NOT_FOUND)
def test_lookup_without_a_plain_not_found_is_denied(err: bytes) -> None:
    """The control is the case above: the same lookup, stderr only 'No such'."""
    with pytest.raises(Denied) as denial:
        engine_objects.lookup(context(1, err), "container", "web")  # type: ignore[arg-type]
    assert denial.value.rule == "scope-unresolved"


def test_first_error_skips_warnings_and_shows_printable_ascii() -> None:
    err = b'time="x" level=warning msg="old"\nError: no \x1b[31mred\x1b[0m\n'
    assert first_error(err) == "Error: no ?[31mred?[0m"
    assert first_error(b"") == "(no message)"
    assert first_error(b"x" * 300) == "x" * 200 + "..."
    assert printable("caf\u00e9\n", 10) == "caf??"
