"""A faithful walk of spf13/pflag's argument parsing (v1.0.x, as vendored by
docker/cli 28.x and compose 2.40), driven by our flag tables.

It mirrors pflag exactly where the difference matters for security:
* ``--`` ends flags; ``-`` and ``""`` are positionals;
* long flags: ``--name=value``, ``--name value`` (the next word is taken
  whatever it looks like), no prefix matching, ``---x`` and ``--=x`` are bad
  syntax;
* short flags combine: ``-itv /:/h``, ``-v/:/h``, ``-v=/:/h`` (``=`` only
  right after the letter and only with something after it), ``-Hunix://..``;
* bool-like flags (NoOptDefVal) take a value only as ``--flag=value``;
* with interspersing off (root, run, create) the first positional ends flags.

Each flag occurrence and each positional remembers where it was written (its
index in the whole argv), so a rewrite (gatekeeper.rewrite_plan) is expressed
against those positions and nothing downstream reconstructs them.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.grammar.spec import Flag


class FlagUse:
    """One occurrence of a flag: which flag, its value, and where it was written."""

    __slots__ = ("flag", "value", "spelled", "start", "count", "prefix")

    def __init__(self, flag: Flag, value: str | None, spelled: str,
                 start: int, count: int, prefix: str) -> None:
        self.flag = flag  # the table tuple (long, short, takes_value, check, why)
        self.value = value  # None for a bare bool-like flag
        self.spelled = spelled  # "--volume", "-v" as the agent wrote it
        self.start = start  # index of its first word in the whole argv
        self.count = count  # 1, or 2 when the value was the next word
        self.prefix = prefix  # combined short flags before it in the same word ("-it")

    @property
    def name(self) -> str:
        return self.flag.long or self.flag.short

    def __repr__(self) -> str:
        return f"FlagUse({self.spelled!r}, {self.value!r})"


class Parsed:
    """The result of walking one flag set: flag uses and positionals."""

    __slots__ = ("uses", "positionals", "positional_at", "rest_start", "offset")

    def __init__(self, offset: int) -> None:
        self.offset = offset  # index of args[0] in the whole argv
        self.uses: list[FlagUse] = []
        self.positionals: list[str] = []
        self.positional_at: list[int] = []  # the whole-argv index of each positional
        # Index in args where flag parsing stopped for non-interspersed walks
        # (the first positional) or len(args) otherwise.
        self.rest_start = -1


def walk(args: list[str], flags: dict[str, Flag], *, interspersed: bool, what: str, offset: int) -> Parsed:
    """Walk `args` against the flag table `flags` the way pflag would."""
    parsed = Parsed(offset)
    i, end = 0, len(args)
    while i < end:
        word = args[i]
        if len(word) < 2 or word[0] != "-":
            if not interspersed:
                parsed.rest_start = i
                add_positionals(parsed, args, i)
                return parsed
            parsed.positionals.append(word)
            parsed.positional_at.append(parsed.offset + i)
            i += 1
        elif word == "--":
            parsed.rest_start = i + 1
            add_positionals(parsed, args, i + 1)
            return parsed
        elif word[1] == "-":
            i = walk_long(args, i, flags, parsed, what)
        else:
            i = walk_shorts(args, i, flags, parsed, what)
    parsed.rest_start = end
    return parsed


def add_positionals(parsed: Parsed, args: list[str], first: int) -> None:
    """Every word from `first` on is a positional (flags ended)."""
    parsed.positionals.extend(args[first:])
    parsed.positional_at.extend(range(parsed.offset + first, parsed.offset + len(args)))


def walk_long(args: list[str], i: int, flags: dict[str, Flag], parsed: Parsed, what: str) -> int:
    word = args[i]
    body = word[2:]
    if not body or body[0] in "-=":
        raise Denied(f"bad flag syntax {word!r} for {what}", rule="unknown-flag")
    name, eq, inline = body.partition("=")
    flag = lookup(flags, "--" + name, word, what)
    if eq:
        parsed.uses.append(FlagUse(flag, inline, "--" + name, parsed.offset + i, 1, ""))
        return i + 1
    if not flag.takes_value:
        parsed.uses.append(FlagUse(flag, None, "--" + name, parsed.offset + i, 1, ""))
        return i + 1
    if i + 1 >= len(args):
        raise Denied(f"flag --{name} needs a value", rule="unknown-flag")
    parsed.uses.append(FlagUse(flag, args[i + 1], "--" + name, parsed.offset + i, 2, ""))
    return i + 2


def walk_shorts(args: list[str], i: int, flags: dict[str, Flag], parsed: Parsed, what: str) -> int:
    """Combined shorthands, pflag's parseShortArg/parseSingleShortArg."""
    word = args[i]
    rest = word[1:]
    while rest:
        letter = rest[0]
        flag = lookup(flags, "-" + letter, word, what)
        prefix = word[: len(word) - len(rest)]
        prefix = "" if prefix == "-" else prefix
        if len(rest) > 2 and rest[1] == "=":
            parsed.uses.append(FlagUse(flag, rest[2:], "-" + letter, parsed.offset + i, 1, prefix))
            return i + 1
        if not flag.takes_value:
            parsed.uses.append(FlagUse(flag, None, "-" + letter, parsed.offset + i, 1, prefix))
            rest = rest[1:]
            continue
        if len(rest) > 1:
            parsed.uses.append(FlagUse(flag, rest[1:], "-" + letter, parsed.offset + i, 1, prefix))
            return i + 1
        if i + 1 >= len(args):
            raise Denied(f"flag -{letter} needs a value", rule="unknown-flag")
        parsed.uses.append(FlagUse(flag, args[i + 1], "-" + letter, parsed.offset + i, 2, prefix))
        return i + 2
    return i + 1


def lookup(flags: dict[str, Flag], key: str, word: str, what: str) -> Flag:
    flag = flags.get(key)
    if flag is None:
        raise Denied(
            f"unknown flag {key!r} (in {word!r}) for {what}", rule="unknown-flag"
        )
    return flag


GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def bool_value(use: FlagUse) -> bool:
    """strconv.ParseBool as pflag applies it; anything else is an error in docker."""
    if use.value is None or use.value in GO_TRUE:
        return True
    if use.value in GO_FALSE:
        return False
    raise Denied(f"invalid boolean {use.value!r} for {use.spelled}", rule="unknown-flag")
