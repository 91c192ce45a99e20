"""The two operator commands ``gatekeeper.cli`` dispatches to (argv without the name)."""

from __future__ import annotations


def audit_main(argv: list[str]) -> int:
    from gatekeeper.views.audit import audit_main as run

    return run(argv)


def replay_main(argv: list[str]) -> int:
    from gatekeeper.views.replay import replay_main as run

    return run(argv)
