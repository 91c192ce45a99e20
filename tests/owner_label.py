"""The owner label gatekeeper injects into run/create/build (gatekeeper.vetting.ownership).

Tests about other rewrites compare argv without it, after checking it is there,
right after the subcommand word, exactly once. A build's cache sources
(gatekeeper.vetting.build_cache: `--no-cache` where the engine holds none of the agent's
images, `--cache-from=sha256:...` where it does) are inserted there just before it, and
dropped with it (tests/test_build_cache.py checks them).
"""

from __future__ import annotations

OWNER_WORDS = ["--label", "gatekeeper.owner=default"]
CREATED_WORDS = ["--label", "gatekeeper.created=default"]  # run/create only: right after OWNER_WORDS


def without_owner_label(argv: list[str] | None) -> list[str]:
    assert argv is not None
    at = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == OWNER_WORDS)
    end = at + 4 if argv[at + 2 : at + 4] == CREATED_WORDS else at + 2
    start = at
    while start > 0 and argv[start - 1].startswith(("--no-cache", "--cache-from=sha256:")):
        start -= 1
    rest = argv[:start] + argv[end:]
    assert OWNER_WORDS[1] not in rest, argv
    return rest
