"""The two operator commands ``gatekeeper.cli`` dispatches to (argv without the name)."""

from __future__ import annotations


def audit_main(argv: list[str]) -> int:
    if argv[:1] == ["verify"]:  # the hash chain (gatekeeper.audit_chain), not a listing
        from gatekeeper.audit_chain import main as verify

        return verify(argv[1:])
    from gatekeeper.views.audit import audit_main as run

    return run(argv)


def replay_main(argv: list[str]) -> int:
    from gatekeeper.views.replay import replay_main as run

    return run(argv)
