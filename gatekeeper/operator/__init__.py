"""Operator commands (run by a person or script, never on the ForceCommand path)."""
