"""From the SSH command string to argv words, as bash would split them.

The agent's string is never given to a shell. We accept only a tiny,
shell-inert subset of bash: words separated by spaces, made of safe
characters, single-quoted text and double-quoted text without anything that
expands. Everything else is refused with the reason.

Two paths give the same words:
* the strict tokenizer below, always run; for pure-ASCII strings it is the
  whole answer (a property test proves it equals the bashlex path and real
  bash on generated strings);
* for strings with non-ASCII characters we also ask bashlex and require that
  it sees exactly one simple command with the same plain words.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

# Characters that are literal in bash when unquoted and outside command
# position: no globbing, expansion, history, comment, brace or tilde meaning.
SAFE_UNQUOTED = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,@+%^"
)

# Inside double quotes bash still expands these ('!' with history on).
UNSAFE_IN_DOUBLE_QUOTES = frozenset('$`\\!')

# Names of refused characters, so a denial says what to change.
CHARACTER_NAMES = {
    ";": "command separator ';'",
    "&": "'&' (background or &&)",
    "|": "pipe '|'",
    "<": "redirection '<'",
    ">": "redirection '>'",
    "(": "subshell '('",
    ")": "subshell ')'",
    "$": "expansion '$'",
    "`": "command substitution '`'",
    "\\": "backslash",
    "*": "glob '*'",
    "?": "glob '?'",
    "[": "glob '['",
    "]": "glob ']'",
    "{": "brace expansion '{'",
    "}": "brace expansion '}'",
    "~": "tilde expansion '~'",
    "!": "history expansion '!'",
    "#": "comment '#'",
    "\n": "newline",
    "\t": "tab",
}

MAX_COMMAND_LENGTH = 16384  # characters; for non-ASCII, as the audit record writes them (\uXXXX)


def split_command(command: str) -> list[str]:
    """Return the argv words of `command` or raise Denied(rule='shell-syntax')."""
    screen_characters(command)
    words = tokenize(command)
    if not command.isascii():
        confirm_with_bashlex(command, words)
    return words


def screen_characters(command: str) -> None:
    """Refuse what no legitimate docker command contains, before any parsing."""
    if len(command) > MAX_COMMAND_LENGTH:
        raise_syntax(f"command longer than {MAX_COMMAND_LENGTH} characters")
    if not command.isascii() and recorded_length(command) > MAX_COMMAND_LENGTH:
        # Stops: a record too large for the proxy's audit intake (a decision left unrecorded).
        raise_syntax(f"command longer than {MAX_COMMAND_LENGTH} characters as the audit log writes it "
                     "(each non-ASCII character is a \\uXXXX escape there)")
    if command.isascii():
        for char in command:
            if char < " " or char == "\x7f":
                raise_syntax(f"control character {describe(char)}")
        return
    screen_unicode(command)


def screen_unicode(command: str) -> None:
    """Invalid UTF-8 (surrogate escapes), control, format and odd space characters."""
    import unicodedata  # only for non-ASCII input: keeps the common path lean

    for char in command:
        category = unicodedata.category(char)
        if category in REFUSED_CATEGORIES or (category == "Zs" and char != " "):
            what = describe(char)
            what = what if what.startswith("byte ") else f"character {what}"
            raise_syntax(f"{what} ({REFUSED_CATEGORIES.get(category, 'unusual space')})")


# Unicode categories refused anywhere: they hide or reorder text (bidi
# overrides, zero-width joiners) or mark invalid UTF-8 (lone surrogates).
REFUSED_CATEGORIES = {
    "Cc": "control character",
    "Cf": "invisible format character",
    "Cs": "invalid UTF-8",
    "Co": "private-use character",
    "Cn": "unassigned character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}


def tokenize(command: str) -> list[str]:
    """Split on spaces; concatenate unquoted, '...' and "..." parts of a word."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    i, end = 0, len(command)
    while i < end:
        char = command[i]
        if char == " ":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        in_word = True
        if char == "'":
            i = read_single_quoted(command, i, current)
        elif char == '"':
            i = read_double_quoted(command, i, current)
        elif char in SAFE_UNQUOTED or not char.isascii():
            current.append(char)
            i += 1
        else:
            raise_syntax(f"unquoted {describe(char)} is not allowed")
    if in_word:
        words.append("".join(current))
    if not words:
        raise Denied("empty command", rule="no-command")
    return words


def read_single_quoted(command: str, start: int, out: list[str]) -> int:
    close = command.find("'", start + 1)
    if close < 0:
        raise_syntax("unterminated single quote")
    out.append(command[start + 1 : close])
    return close + 1


def read_double_quoted(command: str, start: int, out: list[str]) -> int:
    close = command.find('"', start + 1)
    if close < 0:
        raise_syntax("unterminated double quote")
    text = command[start + 1 : close]
    for char in text:
        if char in UNSAFE_IN_DOUBLE_QUOTES:
            raise_syntax(f"{describe(char)} inside double quotes; use single quotes")
    out.append(text)
    return close + 1


def confirm_with_bashlex(command: str, words: list[str]) -> None:
    """Second opinion for non-ASCII input: one simple command, same plain words."""
    if bashlex_words(command) != words:
        raise_syntax("the command is ambiguous (shell parsers disagree)")


def bashlex_words(command: str) -> list[str]:
    """Words of `command` per bashlex, or Denied if it is not one simple command.

    bashlex has pathological inputs: a '$' inside single quotes after a word
    character (x'${') makes it allocate without bound. It only ever sees
    strings the tokenizer accepted, we keep '$' away from it altogether, and it
    runs under a memory and time bound, so a hostile string costs a denial.
    """
    if "$" in command or "\\" in command:
        raise_syntax("'$' and backslashes are not accepted together with non-ASCII text")
    try:
        import bashlex

        with bounded(BASHLEX_SECONDS, BASHLEX_EXTRA_BYTES):
            trees = bashlex.parse(command)
    except Exception as error:  # noqa: BLE001 - bashlex raises many types; all mean "no"
        raise_syntax(f"the shell parser refused it ({type(error).__name__})")
    if len(trees) != 1 or trees[0].kind != "command":
        raise_syntax("only one simple command is allowed")
    return [plain_word(node) for node in trees[0].parts]


BASHLEX_SECONDS = 2.0
BASHLEX_EXTRA_BYTES = 512 << 20


class ParserTimeout(Exception):
    """bashlex took longer than its bound."""


class bounded:
    """Temporarily lower RLIMIT_AS (to current use + `extra` bytes) and arm a timer."""

    def __init__(self, seconds: float, extra: int) -> None:
        self.seconds = seconds
        self.extra = extra

    def __enter__(self) -> None:
        import resource
        import signal

        self.saved_limit = resource.getrlimit(resource.RLIMIT_AS)
        ceiling = address_space_in_use() + self.extra
        hard = self.saved_limit[1]
        if hard == resource.RLIM_INFINITY or ceiling < hard:
            resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
        self.saved_handler = signal.signal(signal.SIGALRM, raise_timeout)
        # keeps firing every 0.1 s: a timeout raised where Python swallows it
        # (a gc callback, a __del__) is raised again
        signal.setitimer(signal.ITIMER_REAL, self.seconds, 0.1)

    def __exit__(self, *exc: object) -> None:
        import resource
        import signal

        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.saved_handler)
        resource.setrlimit(resource.RLIMIT_AS, self.saved_limit)


def raise_timeout(_signum: int, _frame: object) -> None:
    raise ParserTimeout


def address_space_in_use() -> int:
    """This process's virtual size in bytes (Linux /proc/self/statm, first field in pages)."""
    import resource

    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[0])
    return pages * resource.getpagesize()


def plain_word(node: object) -> str:
    if getattr(node, "kind", None) != "word" or getattr(node, "parts", None):
        raise_syntax("only plain words are allowed (no expansions, assignments or redirections)")
    return node.word  # type: ignore[attr-defined, no-any-return]  # bashlex (no stubs): a word node's str


def describe(char: str) -> str:
    name = CHARACTER_NAMES.get(char)
    if name:
        return name
    if 0xDC80 <= ord(char) <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
        return f"byte 0x{ord(char) - 0xDC00:02X}"
    return f"U+{ord(char):04X}"


def recorded_length(command: str) -> int:
    """Characters of `command` as the audit record's JSON string writes it (gatekeeper.audit)."""
    from gatekeeper.audit import encode_string

    return len(encode_string(command)) - 2


def raise_syntax(reason: str) -> None:
    raise Denied(reason, rule="shell-syntax")
