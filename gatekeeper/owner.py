"""The owner label: what marks an engine object as one profile's (a leaf module).

Everything the agent creates is labelled `OWNER_LABEL=<profile>`; every label
under `RESERVED_PREFIX` is gatekeeper's alone, so the agent can neither forge nor
override one. The profile is the key's `--name` on the ForceCommand line, or
`DEFAULT_PROFILE` without one.
"""

from __future__ import annotations

OWNER_LABEL = "gatekeeper.owner"
RESERVED_PREFIX = "gatekeeper."  # every label under it is the gatekeeper's
DEFAULT_PROFILE = "default"  # the profile when the ForceCommand line has no --name
