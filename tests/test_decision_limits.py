"""The decision's own resources (issue 18 item 3).

* Every engine or compose call made while deciding runs under a memory
  (RLIMIT_DATA), time and output limit (gatekeeper.bounded); past one, the
  command is denied with rule `decision-limit`. Each limit is shown both ways:
  the same child within the limit finishes, past it is cut off.
* YAML alias expansion is bounded before compose sees the file: the alias bomb
  of the issue (100 references to 100 references to a 10 KB string, 11 KB on
  disk) is refused at once with bounded memory; the control is our own
  expansion counter without the bound, which finds ~100 MB.
"""

# One case per line keeps each input beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import resource
import sys
import time

import pytest
import yaml

from gatekeeper import bounded
from gatekeeper.errors import Denied
from gatekeeper.vetting import compose_files

ENV = {"PATH": "/usr/bin:/bin"}
PYTHON = sys.executable


def run(argv: list[str], **limits: object) -> tuple[int, bytes, bytes]:
    return bounded.run_bounded(argv, None, ENV, "/", **limits)  # type: ignore[arg-type]


def test_output_within_and_past_the_cap() -> None:
    status, out, _ = run([PYTHON, "-c", "print('x' * 1000)"], timeout=10.0, output=4096)
    assert status == 0 and len(out) == 1001
    with pytest.raises(Denied, match="output limit") as denied:
        run(["/usr/bin/yes"], timeout=10.0, output=1 << 20)
    assert denied.value.rule == "decision-limit"


def test_time_within_and_past_the_limit() -> None:
    assert run(["/bin/sleep", "0.1"], timeout=5.0)[0] == 0
    started = time.monotonic()
    with pytest.raises(Denied, match="time limit") as denied:
        run(["/bin/sleep", "30"], timeout=0.5)
    assert denied.value.rule == "decision-limit" and time.monotonic() - started < 5


def test_memory_within_and_past_the_limit() -> None:
    grab = "x = bytearray(200 << 20); print(len(x))"
    assert run([PYTHON, "-c", grab], timeout=20.0, memory=1 << 30)[1].strip() == str(200 << 20).encode()
    status, _, err = run([PYTHON, "-c", grab], timeout=20.0, memory=100 << 20)
    assert status != 0 and b"MemoryError" in err  # refused by the kernel, not by luck


def test_go_out_of_memory_is_the_limit_rule() -> None:
    """Go dies with 'fatal error: runtime: out of memory' (exit 2): named as the memory limit."""
    script = "import sys; sys.stderr.write('fatal error: runtime: out of memory\\n'); sys.exit(2)"
    with pytest.raises(Denied, match="memory limit") as denied:
        run([PYTHON, "-c", script], timeout=10.0)
    assert denied.value.rule == "decision-limit"


def test_stdin_is_fed_whole() -> None:
    data = b"y" * (3 << 20)
    status, out, _ = bounded.run_bounded(["/bin/cat"], data, ENV, "/", 10.0)
    assert status == 0 and out == data


def alias_bomb() -> bytes:
    lines = ["x-a: &a " + '"' + "x" * 10240 + '"', "x-b: &b [" + ", ".join(["*a"] * 100) + "]",
             "x-c: &c [" + ", ".join(["*b"] * 100) + "]", "services:", "  app:", "    image: alpine"]
    return ("\n".join(lines) + "\n").encode()


def test_alias_bomb_expands_large_without_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same counter with the bound lifted finds the ~100 MB compose would build."""
    monkeypatch.setattr(compose_files, "MAX_EXPANDED", 1 << 62)
    data = alias_bomb()
    assert len(data) < 12 << 10
    assert compose_files.expanded_size(yaml.parse(data.decode(), Loader=yaml.SafeLoader)) > 100_000_000
    compose_files.check_alias_expansion("compose.yaml", data)  # no bound, no refusal


def test_alias_bomb_is_refused_fast_with_bounded_memory() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(Denied) as denied:
        compose_files.referenced_files("/w/compose.yaml", "/w", alias_bomb())
    assert denied.value.rule == "compose-yaml-aliases"
    assert time.monotonic() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 << 10  # KiB: under 50 MB


ANCHOR_CASES = {
    "no aliases": (b"services:\n  a:\n    image: x\n", "allowed"),
    "merge key": (b"x: &c {image: x}\nservices:\n  a:\n    <<: *c\n  b:\n    <<: *c\n", "allowed"),
    "star in a string": (b"services:\n  a:\n    command: ['ls', '*.txt']\n", "allowed"),
    "alias of a 3 MB string used twice": (b'x: &a "' + b"y" * (3 << 19) + b'"\ny: [*a, *a]\n', "compose-yaml-aliases"),
    "wide fan-out": (b"a: &a [" + b"1, " * 1000 + b"1]\nb: &b [" + b"*a, " * 1000 + b"*a]\nc: [" + b"*b, " * 100 + b"*b]\n", "compose-yaml-aliases"),
    "undefined alias": (b"a: *nothing\n", "compose-file"),
}


@pytest.mark.parametrize(("data", "expected"), ANCHOR_CASES.values(), ids=ANCHOR_CASES.keys())
def test_alias_expansion_table(data: bytes, expected: str) -> None:
    try:
        compose_files.check_alias_expansion("compose.yaml", data)
    except Denied as denial:
        assert denial.rule == expected
    else:
        assert expected == "allowed"
