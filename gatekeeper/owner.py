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
