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


def build_records_answer(args: list[str], built: set[str] | frozenset[str],
                         profile: str = "default") -> tuple[int, bytes, bytes] | None:
    """A fake engine's answer to the CLI layer's build-record questions
    (gatekeeper.build_records), None when `args` asks something else: `volume ls -q` of one
    image's records (a record's name when `built` holds the ID), or `volume ls --format` of
    all the profile's (one ID per line)."""
    if args[:2] != ["volume", "ls"] or f"label=gatekeeper.built-by={profile}" not in args:
        if args[:2] == ["volume", "ls"] and any(a.startswith("label=gatekeeper.built-by=") for a in args):
            return 0, b"", b""  # another profile's records: none
        return None
    wanted = [a.removeprefix("label=gatekeeper.built-image=") for a in args
              if a.startswith("label=gatekeeper.built-image=")]
    if wanted:
        return 0, b"gatekeeper-built-0001\n" if wanted[0] in built else b"", b""
    return 0, "".join(f"{ident}|\n" for ident in sorted(built)).encode(), b""


def api_build_records(wanted: list[str], built: set[str] | frozenset[str],
                      profile: str = "default") -> list[dict[str, object]] | None:
    """A fake engine's `GET /volumes?filters=` answer to the proxy's build-record questions
    (label filters `wanted`), None when they ask something else: the records of `built`."""
    owners = [w.removeprefix("gatekeeper.built-by=") for w in wanted if w.startswith("gatekeeper.built-by=")]
    if not owners:
        return None
    key = "gatekeeper.built-image="
    images = [w.removeprefix(key) for w in wanted if w.startswith(key)]
    return [{"Name": f"gatekeeper-built-{ident[7:19]}", "Driver": "local",
             "Labels": {"gatekeeper.built-by": owners[0], "gatekeeper.built-image": ident}}
            for ident in sorted(built) if owners[0] == profile and (not images or ident in images)]
