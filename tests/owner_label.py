"""The owner label gatekeeper injects into run/create/build (gatekeeper.vetting.ownership).

Tests about other rewrites compare argv without it, after checking it is there,
right after the subcommand word, exactly once.
"""

from __future__ import annotations

OWNER_WORDS = ["--label", "gatekeeper.owner=default"]
CREATED_WORDS = ["--label", "gatekeeper.created=default"]  # run/create only: right after OWNER_WORDS


def without_owner_label(argv: list[str] | None) -> list[str]:
    assert argv is not None
    at = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == OWNER_WORDS)
    end = at + 4 if argv[at + 2 : at + 4] == CREATED_WORDS else at + 2
    rest = argv[:at] + argv[end:]
    assert OWNER_WORDS[1] not in rest, argv
    return rest
