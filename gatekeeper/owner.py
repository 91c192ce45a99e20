"""The owner label: what marks an engine object as one profile's (a leaf module).

Everything the agent creates is labelled `OWNER_LABEL=<profile>`; every label
under `RESERVED_PREFIX` is gatekeeper's alone, so the agent can neither forge nor
override one. The profile is the key's `--name` on the ForceCommand line, or
`DEFAULT_PROFILE` without one.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Container

OWNER_LABEL = "gatekeeper.owner"
RESERVED_PREFIX = "gatekeeper."  # every label under it is the gatekeeper's
DEFAULT_PROFILE = "default"  # the profile when the ForceCommand line has no --name

# Containers inherit their image's labels, so a container's owner label alone proves
# nothing: the operator's `docker run` of an image the agent built (labelled as the
# agent's) carries it too. What the agent creates is also labelled CREATED_LABEL=<profile>
# by the create itself, and a container is a profile's only when both labels name it and
# its image does not carry CREATED_LABEL=<profile> (a Dockerfile LABEL, a commit).
CREATED_LABEL = "gatekeeper.created"

# Labels of a pull record (gatekeeper.steps and gatekeeper.proxy.pulls make them; the agent
# cannot: gatekeeper.*): the engine cannot label a pulled image, so its puller is recorded.
PULLED_BY, PULLED_IMAGE, PULLED_TAG = (
    "gatekeeper.pulled-by", "gatekeeper.pulled-image", "gatekeeper.pulled-tag")
# A record outlives its image when someone else removes the image, and the same ID and tag
# come back with the operator's next pull: so a record also pins the image object its pull
# tagged, by the image's LastTagTime (engine inspect Metadata.LastTagTime) right after
# gatekeeper re-applied the pulled tag itself (gatekeeper.steps.pin_pull): the engine sets it
# to now on every tag put on the image and never back, and an image removed and pulled again
# has another one (dockerd's own pull sets none). A record counts only while the image's
# LastTagTime is the one it pins; without one (an older record, an engine that gives none),
# it counts as none.
PULLED_TAG_TIME = "gatekeeper.pulled-tag-time"

# Labels of a build record (gatekeeper.build_records): images inherit their base's labels, so
# an image's owner label alone proves nothing either (the operator's build FROM the agent's
# image carries it). An image is a profile's only when a build record of that profile names
# its ID: the ID is the digest of the image's config, so a descendant (another config) never
# matches the record of its base.
BUILT_BY, BUILT_IMAGE = "gatekeeper.built-by", "gatekeeper.built-image"


def proven_labels(labels: dict[str, str], image_labels: dict[str, str] | None) -> dict[str, str]:
    """A container's labels, without its owner labels unless its create set them:
    the owner label and CREATED_LABEL agree and the image (None: unknown) does not carry it."""
    owner = labels.get(OWNER_LABEL)
    if owner is not None and labels.get(CREATED_LABEL) == owner and image_labels is not None \
            and image_labels.get(CREATED_LABEL) != owner:
        return labels
    return {key: value for key, value in labels.items() if key not in (OWNER_LABEL, CREATED_LABEL)}


def proven_image_labels(labels: dict[str, str], ident: str, built: Container[str]) -> dict[str, str]:
    """An image's labels, without its owner label unless a build record names its ID:
    `built` holds (`in`) the image IDs this profile's build records name."""
    if OWNER_LABEL not in labels or ident in built:
        return labels
    return {key: value for key, value in labels.items() if key != OWNER_LABEL}


def tag_time_pin(text: object) -> str:
    """An engine's Metadata.LastTagTime as a pull record's pin, or "" for none: no answer,
    null, or Go's zero time (an image no tag was ever put on). The engine's JSON string as
    the API gives it, or quoted (the CLI's `{{json .Metadata.LastTagTime}}`: the CLI prints a
    bare `{{.Metadata.LastTagTime}}` in Go's other layout when its template fits its own type,
    its JSON is the API's either way)."""
    if not isinstance(text, str):
        return ""
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text if text[:4].isdigit() and not text.startswith("0001-") else ""
