"""The owner label gatekeeper injects into run/create/build (gatekeeper.vetting.ownership).

Tests about other rewrites compare argv without it, after checking it is there,
right after the subcommand word, exactly once.
"""

from __future__ import annotations

OWNER_WORDS = ["--label", "gatekeeper.owner=default"]


def without_owner_label(argv: list[str] | None) -> list[str]:
    assert argv is not None
    at = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == OWNER_WORDS)
    rest = argv[:at] + argv[at + 2 :]
    assert OWNER_WORDS[1] not in rest, argv
    return rest
