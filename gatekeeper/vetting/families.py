"""Rules beyond single flags, per command family (filled in by the deep-vetting work)."""

from __future__ import annotations

FAMILY_VETTERS: dict = {}
