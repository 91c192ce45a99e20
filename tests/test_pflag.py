"""The pflag walk, case by case against spf13/pflag's rules (v1.0.x)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.errors import Denied
from gatekeeper.grammar.pflag import bool_value, walk
from gatekeeper.grammar.spec import HELP, b, table, v

FLAGS = table(b("interactive", "i"), b("tty", "t"), v("volume", "v"), v("name"), b("rm"),
              b("privileged"), HELP)


def uses(args: list[str], interspersed: bool = True) -> list[tuple[str, str | None]]:
    parsed = walk(args, FLAGS, interspersed=interspersed, what="test", offset=0)
    return [(u.flag.long, u.value) for u in parsed.uses]


def positionals(args: list[str], interspersed: bool = True) -> list[str]:
    return walk(args, FLAGS, interspersed=interspersed, what="test", offset=0).positionals


WALKS = [
    (["-itv", "/:/h", "img"], [("interactive", None), ("tty", None), ("volume", "/:/h")]),
    (["-v/:/h"], [("volume", "/:/h")]),
    (["-v=/:/h"], [("volume", "/:/h")]),
    (["-v="], [("volume", "=")]),  # pflag: '=' is the value when nothing follows it
    (["-iv", "x"], [("interactive", None), ("volume", "x")]),
    (["-ivx"], [("interactive", None), ("volume", "x")]),
    (["--volume=/:/h"], [("volume", "/:/h")]),
    (["--volume", "/:/h"], [("volume", "/:/h")]),
    (["--volume", "--rm"], [("volume", "--rm")]),  # the next word is the value, whatever it is
    (["-v", "-i"], [("volume", "-i")]),
    (["--name="], [("name", "")]),
    (["--privileged=false"], [("privileged", "false")]),
    (["-i=false"], [("interactive", "false")]),
    (["--rm", "--", "-v", "x"], [("rm", None)]),
    (["img", "-v", "x"], [("volume", "x")]),  # interspersed: flags after positionals
]


@pytest.mark.parametrize(("args", "expected"), WALKS, ids=[" ".join(a) for a, _ in WALKS])
def test_walk(args: list[str], expected: list[tuple[str, str | None]]) -> None:
    assert uses(args) == expected


def test_double_dash_ends_flags() -> None:
    assert positionals(["--rm", "--", "-v", "x"]) == ["-v", "x"]


def test_non_interspersed_stops_at_first_positional() -> None:
    assert uses(["-i", "img", "-v", "/:/h"], interspersed=False) == [("interactive", None)]
    assert positionals(["-i", "img", "-v", "/:/h"], interspersed=False) == ["img", "-v", "/:/h"]


def test_single_dash_and_empty_are_positionals() -> None:
    assert positionals(["-", ""]) == ["-", ""]


BAD = [
    ["--vol", "x"],  # no prefix matching
    ["---volume", "x"],
    ["--=x"],
    ["-x"],
    ["-ix"],
    ["-i="],  # bool 'i', then '=' is an unknown shorthand
    ["--volume"],  # needs a value
    ["-v"],
    ["-h=x", "--nope"],
]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_syntax_is_denied(args: list[str]) -> None:
    with pytest.raises(Denied):
        walk(args, FLAGS, interspersed=True, what="test", offset=0)


@pytest.mark.parametrize(("value", "expected"), [
    (None, True), ("true", True), ("1", True), ("t", True), ("T", True), ("TRUE", True), ("True", True),
    ("false", False), ("0", False), ("f", False), ("F", False), ("FALSE", False), ("False", False),
])
def test_go_parse_bool(value: str | None, expected: bool) -> None:
    parsed = walk([f"--privileged={value}"] if value is not None else ["--privileged"], FLAGS,
                  interspersed=True, what="t", offset=0)
    assert bool_value(parsed.uses[0]) is expected


@pytest.mark.parametrize("value", ["yes", "on", "tRuE", ""])
def test_go_parse_bool_rejects_the_rest(value: str) -> None:
    parsed = walk([f"--privileged={value}"], FLAGS, interspersed=True, what="t", offset=0)
    with pytest.raises(Denied):
        bool_value(parsed.uses[0])


# --- where each word sits: rewrites are expressed against these positions ---

POSITIONS = [
    (["-itv", "/:/h", "img", "sh"], True, [2, 3]),
    (["img", "-v", "x", "sh"], True, [0, 3]),  # flags between positionals
    (["--rm", "--", "-v", "x"], True, [2, 3]),  # the '--' that ends flags is no positional
    (["a", "--", "--", "b"], True, [0, 2, 3]),  # only the first '--' ends flags
    (["--name", "--", "img"], True, [2]),  # a '--' taken as a value is the value
    (["-i", "img", "-v", "/:/h"], False, [1, 2, 3]),  # interspersing off: all after img
    (["-", "", "-v=x"], True, [0, 1]),
]


@pytest.mark.parametrize(("args", "interspersed", "indices"), POSITIONS,
                         ids=[" ".join(p[0]) for p in POSITIONS])
def test_each_positional_records_its_argv_index(args: list[str], interspersed: bool,
                                                indices: list[int]) -> None:
    argv = ["docker", "run", *args]
    parsed = walk(args, FLAGS, interspersed=interspersed, what="test", offset=2)
    assert parsed.positional_at == [i + 2 for i in indices]
    assert [argv[i] for i in parsed.positional_at] == parsed.positionals


def test_each_flag_use_records_its_argv_index() -> None:
    argv = ["docker", "run", "-it", "--name", "x", "-v/:/h", "img"]
    parsed = walk(argv[2:], FLAGS, interspersed=False, what="test", offset=2)
    assert [(u.spelled, u.start, u.count) for u in parsed.uses] == [
        ("-i", 2, 1), ("-t", 2, 1), ("--name", 3, 2), ("-v", 5, 1)]


flag_word = st.sampled_from(["-i", "-t", "-it", "--rm", "-v", "--volume", "-vx", "--name=n", "--name", "--"])
any_word = st.one_of(flag_word, st.text(alphabet="ab-", max_size=3))


@given(st.lists(any_word, max_size=8), st.booleans())
def test_positions_are_the_words_no_flag_took(args: list[str], interspersed: bool) -> None:
    """Whatever walks: the positionals sit at their recorded indices, no index is both a
    flag's word and a positional, and the indices increase."""
    try:
        parsed = walk(args, FLAGS, interspersed=interspersed, what="test", offset=1)
    except Denied:
        return
    argv = ["docker", *args]
    assert [argv[i] for i in parsed.positional_at] == parsed.positionals
    taken = {u.start + k for u in parsed.uses for k in range(u.count)}
    assert not taken & set(parsed.positional_at)
    assert parsed.positional_at == sorted(set(parsed.positional_at))
