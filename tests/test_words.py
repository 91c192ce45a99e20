"""Words from the SSH command string: the shell-inert subset of bash.

Properties: splitting never raises anything but Denied, never accepts an
unquoted metacharacter, and for every accepted string gives exactly the argv
that real bash gives (differential test with `printf '%s\\0'`) and that the
bashlex path gives.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.errors import Denied
from gatekeeper.words import SAFE_UNQUOTED, bashlex_words, split_command

ACCEPTED = [
    ("docker ps", ["docker", "ps"]),
    ("docker  ps   -a", ["docker", "ps", "-a"]),
    (" docker ps ", ["docker", "ps"]),
    ("docker ps --format '{{.Names}}'", ["docker", "ps", "--format", "{{.Names}}"]),
    ('docker run --rm img sh -c "echo a; ls"', ["docker", "run", "--rm", "img", "sh", "-c", "echo a; ls"]),
    ("docker e\"x\"ec x", ["docker", "exec", "x"]),
    ("\"docker\" ps", ["docker", "ps"]),
    ("docker ''", ["docker", ""]),
    ("docker 'a'\"b\"c", ["docker", "abc"]),
    ("docker '$HOME' '`id`' '\\' '!'", ["docker", "$HOME", "`id`", "\\", "!"]),
    ("docker \"it's\"", ["docker", "it's"]),
    ("docker run img echo héllo", ["docker", "run", "img", "echo", "héllo"]),
    ("docker run img echo '日本語'", ["docker", "run", "img", "echo", "日本語"]),
]

REFUSED = [
    ("docker ps; id", "separator"),
    ("docker ps\nid", "newline"),
    ("docker ps\tid", "tab"),
    ("docker ps\rid", "carriage return"),
    ("docker ps\x00", "NUL"),
    ("docker ps\x7f", "DEL"),
    ("docker ps\x1b[31m", "escape sequence"),
    ("docker p\u200bs", "zero-width space"),
    ("docker \u202eps", "bidi override"),
    ("docker ps\u2028", "line separator"),
    ("docker\u00a0ps", "no-break space looks like a space"),
    ("docker ps \udc80", "invalid UTF-8 (surrogate escape)"),
    ("docker ps \x85", "C1 control"),
    ("docker $'\\x65xec'", "ANSI-C quoting (bashlex misreads it)"),
    ("docker \"$x\"", "expansion in double quotes"),
    ("docker \"\\\"\"", "backslash in double quotes"),
    ("docker \"!x\"", "history expansion in double quotes"),
    ("", "empty"),
    ("   ", "only spaces"),
    ("docker " + "a" * 20000, "too long"),
]


@pytest.mark.parametrize(("command", "words"), ACCEPTED, ids=[c for c, _ in ACCEPTED])
def test_accepted(command: str, words: list[str]) -> None:
    assert split_command(command) == words


@pytest.mark.parametrize(("command", "why"), REFUSED, ids=[w for _, w in REFUSED])
def test_refused(command: str, why: str) -> None:
    with pytest.raises(Denied):
        split_command(command)


METACHARACTERS = set(";&|<>()$`\\*?[]{}~!#\n\t")
ascii_printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_never_raises_anything_but_denied(command: str) -> None:
    try:
        split_command(command)
    except Denied:
        pass


def unquoted_characters(command: str) -> str:
    """The characters bash sees outside quotes (valid only for accepted strings)."""
    out, quote = [], ""
    for char in command:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        else:
            out.append(char)
    return "".join(out)


@given(st.text(alphabet=ascii_printable, max_size=60))
def test_never_accepts_an_unquoted_metacharacter(command: str) -> None:
    try:
        split_command(command)
    except Denied:
        return
    assert not METACHARACTERS & set(unquoted_characters(command))


# Safe strings: words of safe characters and quoted segments, so most are accepted.
safe_char = st.sampled_from(sorted(SAFE_UNQUOTED))
single_quoted = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                                               exclude_characters="'"), max_size=8).map(lambda s: f"'{s}'")
double_quoted = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"$`\\!'), max_size=8
).map(lambda s: f'"{s}"')
word = st.lists(st.one_of(st.text(alphabet=safe_char, min_size=1, max_size=6), single_quoted, double_quoted),
                min_size=1, max_size=4).map("".join)
safe_command = st.lists(word, min_size=1, max_size=6).map(lambda words: "docker " + " ".join(words))


def bash_argv(command: str) -> list[str]:
    out = subprocess.run(["/bin/bash", "--norc", "--noprofile", "-c", f"printf '%s\\0' {command}"],
                         capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    return ["docker", *out.decode().split("\0")[:-1]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(safe_command)
def test_same_words_as_real_bash(command: str) -> None:
    words = split_command(command)
    assert bash_argv(command.removeprefix("docker ")) == words


@settings(max_examples=300, deadline=None)
@given(safe_command)
def test_fast_path_equals_bashlex_path(command: str) -> None:
    """The ASCII fast path agrees with bashlex, or else real bash sides with us.

    bashlex misreads some quoting: a '$' inside single quotes becomes an
    expansion, and two adjacent empty single-quoted strings become a word of
    two quote characters. Where it disagrees with the tokenizer, real bash
    must agree with the tokenizer; for non-ASCII input (where bashlex is
    consulted) any disagreement denies.
    """
    ours = split_command(command)
    try:
        theirs = bashlex_words(command)
    except Denied:
        theirs = None
    if theirs != ours:
        assert bash_argv(command.removeprefix("docker ")) == ours


PATHOLOGICAL_FOR_BASHLEX = [
    "docker é x'${'",  # bashlex allocates without bound on a single-quoted '${'
    "docker é 'a$b'",
    "docker é 'a\\b'",
]


@pytest.mark.parametrize("command", PATHOLOGICAL_FOR_BASHLEX)
def test_bashlex_never_sees_dollar_or_backslash(command: str) -> None:
    """The non-ASCII path refuses at once instead of feeding bashlex its worst inputs."""
    with pytest.raises(Denied):
        split_command(command)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # a swallowed tick, re-raised
def test_bashlex_runs_bounded_in_time() -> None:
    """Defence in depth: even a pathological input only costs a bounded denial."""
    import time

    import bashlex

    from gatekeeper.words import bounded

    started = time.monotonic()
    with pytest.raises(Exception), bounded(1.0, 256 << 20):  # noqa: B017 - timeout or MemoryError
        bashlex.parse("docker x'${'")
    assert time.monotonic() - started < 5
