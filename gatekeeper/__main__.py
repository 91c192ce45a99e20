"""`python3 -I -m gatekeeper` starts as the entry script does (gatekeeper.cli.entry)."""

from __future__ import annotations

from gatekeeper.cli import entry

entry()
