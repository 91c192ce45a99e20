"""Operator views of the audit log: ``gatekeeper audit`` (``audit.audit_main``, and
``audit verify``: ``verify.main``) and ``gatekeeper replay`` (``replay.replay_main``).

Nothing here runs on the ForceCommand path (gatekeeper.operator's table names these
entry points). Only ``render`` imports rich, and only when stdout is a terminal.
"""
