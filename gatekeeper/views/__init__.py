"""Operator views of the audit log: ``gatekeeper audit`` and ``gatekeeper replay``.

Nothing here runs on the ForceCommand path. ``gatekeeper.cli`` dispatches to
``gatekeeper.views.cli.audit_main`` and ``replay_main``. Only ``render``
imports rich, and only when stdout is a terminal.
"""
