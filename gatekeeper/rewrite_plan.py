"""What runs differs from what was typed: the one place argv is rewritten.

Vetters never edit argv. They add steps to a plan, expressed against the
positions the parser recorded (gatekeeper.grammar.pflag: each flag use's first
word and word count, each positional's index, all in the argv as typed), and
the decision applies the plan once. Three steps:

* replace(start, count, words): the typed words [start, start+count) become
  `words`; `remove` is a replacement by nothing. Each typed word has at most
  one replacement: a span strictly covering earlier ones supersedes them
  (compose rebuilds its root flags whole); the same span twice, or spans that
  overlap otherwise, are a vetter bug (PlanConflict), which the decision turns
  into a denial rather than let one vetter's checked words silently replace another's.
* insert(index, words): `words` go before the typed word at `index` (after
  any earlier insert there; len(argv) means the end). An insert strictly inside
  a replaced span is a PlanConflict at apply.
* pin(start, prefix, data): the replacement at `start` names a file whose
  checked bytes the ForceCommand hands docker (gatekeeper.pinning); apply
  says where that word landed.
* snapshot(start, prefix, directory): the replacement at `start` is `prefix`
  and a decided build context directory, which the ForceCommand copies and
  names by its copy (gatekeeper.context_snapshot); `snapshots` says where it landed.

Every typed word no step touches reaches docker unchanged and in its order.
"""

from __future__ import annotations


class PlanConflict(Exception):
    """Two steps of a plan disagree about the same words (a vetter bug)."""


class RewritePlan:
    __slots__ = ("replaced", "inserted", "pinned", "snapshotted")

    def __init__(self) -> None:
        self.replaced: dict[int, tuple[int, list[str]]] = {}  # start -> (count, words)
        self.inserted: dict[int, list[str]] = {}  # typed index -> words that go before it
        self.pinned: dict[int, tuple[str, bytes]] = {}  # replaced start -> (word prefix, bytes)
        self.snapshotted: dict[int, tuple[str, str]] = {}  # replaced start -> (word prefix, directory)

    def replace(self, start: int, count: int, words: list[str]) -> None:
        """The typed words [start, start+count) become `words`; a span strictly covering
        earlier replacements supersedes them (and their pins)."""
        end = start + count
        for other, (other_count, _) in list(self.replaced.items()):
            other_end = other + other_count
            if other_end <= start or end <= other:
                continue  # disjoint
            if (other, other_end) == (start, end) or not (start <= other and other_end <= end):
                raise PlanConflict(f"words {start}..{end - 1} overlap a rewrite of {other}..{other_end - 1}")
            del self.replaced[other]
            self.pinned.pop(other, None)
            self.snapshotted.pop(other, None)
        self.replaced[start] = (count, list(words))

    def remove(self, start: int, count: int) -> None:
        self.replace(start, count, [])

    def insert(self, index: int, words: list[str]) -> None:
        """`words` before the typed word at `index`, after what earlier steps put there."""
        self.inserted.setdefault(index, []).extend(words)

    def pin(self, start: int, prefix: str, data: bytes) -> None:
        """The last word of the replacement at `start` begins with `prefix` and names
        a file docker must read as `data`."""
        if start not in self.replaced or not self.replaced[start][1]:
            raise PlanConflict(f"a pin at {start} without a replacement there")
        self.pinned[start] = (prefix, data)

    def snapshot(self, start: int, prefix: str, directory: str) -> None:
        """The last word of the replacement at `start` is `prefix` + `directory`, a build
        context docker must read as a snapshot of what was checked."""
        if start not in self.replaced or self.replaced[start][1][-1:] != [prefix + directory]:
            raise PlanConflict(f"a snapshot at {start} without its replacement there")
        self.snapshotted[start] = (prefix, directory)

    def apply(self, argv: list[str]) -> tuple[list[str], list[tuple[int, str, bytes]]]:
        """The argv to run, and each pin as (index in that argv, prefix, bytes)."""
        out, last_word = self.walk(argv)
        pins = [(last_word[start], prefix, data) for start, (prefix, data) in self.pinned.items()]
        return out, pins

    def snapshots(self, argv: list[str]) -> list[tuple[tuple[int, str], str]]:
        """Each snapshot as ((index in the argv `apply` gives, prefix), directory)."""
        _, last_word = self.walk(argv)
        return [((last_word[start], prefix), directory)
                for start, (prefix, directory) in self.snapshotted.items()]

    def walk(self, argv: list[str]) -> tuple[list[str], dict[int, int]]:
        """The argv to run, and where the last word of each typed span landed in it."""
        out: list[str] = []
        last_word: dict[int, int] = {}
        visited: set[int] = set()
        i = 0
        while i <= len(argv):
            visited.add(i)
            out.extend(self.inserted.get(i, ()))
            if i == len(argv):
                break
            count, words = self.replaced.get(i, (1, [argv[i]]))
            out.extend(words)
            last_word[i] = len(out) - 1
            i += count
        self.check_placed(visited)
        return out, last_word

    def check_placed(self, visited: set[int]) -> None:
        """Every step starts on a word boundary the walk reached (none inside a span)."""
        lost = sorted((set(self.replaced) | set(self.inserted)) - visited)
        if lost:
            raise PlanConflict(f"rewrite steps at {lost} fall inside another replacement")
