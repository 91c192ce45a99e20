"""Which images the agent may use ([images] shared), both layers.

Image tags are a namespace the agent shares with the operator, and an image's content
(its files, its `ENV`) reaches whatever runs it: `docker run <the operator's image> env`
prints what `image inspect` redacts. So every route by which an image's content reaches a
container or a build the agent controls (run/create, compose services, a build's FROM,
COPY --from and RUN --mount=from, --build-context docker-image://, image mounts, the API's
container create and build) asks `may_use` about the image the engine resolved, by ID.
The agent may use an image when:

* it owns it: built through gatekeeper (owner label `gatekeeper.owner=<profile>`), or
  pulled by it (a pull record for this image ID: gatekeeper.vetting.namespaces,
  gatekeeper.proxy.pulls);
* it came from a registry the policy lets the agent pull from: a RepoDigest whose
  repository `[images] allowed` admits (empty: any registry); the agent could have
  fetched it itself;
* the operator lends it: one of its tags (or digests' repositories) matches
  `[images] shared` (patterns as for `allowed`, e.g. "docker.io/library/app").

Anything else is the operator's (or another profile's) local image: refused with rule
image-not-shared. `may_use` is pure; the engine questions live with each layer
(gatekeeper.engine_objects for the CLI layer, gatekeeper.proxy.images for the API).
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.owner import OWNER_LABEL

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy

RULE = "image-not-shared"
OWNED, PULLED, REGISTRY, SHARED = "owned", "pulled", "registry", "shared"


class ImageFacts:
    """What the engine says of one image: ID, tags, RepoDigests (`repo@sha256:...`), labels,
    and its LastTagTime as a pull record's pin ("" none: gatekeeper.owner.tag_time_pin)."""

    __slots__ = ("ident", "tags", "digests", "labels", "tagged")

    def __init__(self, ident: str, tags: list[str], digests: list[str], labels: dict[str, str],
                 tagged: str = "") -> None:
        self.ident = ident
        self.tags = tags
        self.digests = digests
        self.labels = labels
        self.tagged = tagged


def may_use(policy: Policy, facts: ImageFacts, *, pulled: bool = False) -> str:
    """Why the policy's profile may use the image (OWNED, PULLED, REGISTRY, SHARED), or ""
    (refused). `pulled`: this profile has a pull record for the image (its ID and pin)."""
    if facts.labels.get(OWNER_LABEL) == policy.profile:
        return OWNED
    if pulled:
        return PULLED
    registries = [digest.partition("@")[0] for digest in facts.digests if "@" in digest]
    allowed = list(policy.images_allowed)
    if any(not allowed or matching(name, allowed) for name in registries):
        return REGISTRY
    shared = list(policy.images_shared)
    if shared and any(matching(name, shared) for name in [*facts.tags, *registries]):
        return SHARED
    return ""


def matching(reference: str, patterns: list[str]) -> bool:
    """The reference's repository (docker.io/library/NAME for a bare name) matches a pattern."""
    from gatekeeper.image_refs import matches, repository

    try:
        name = repository(reference)
    except ValueError:
        return False  # `<none>:<none>` and the like name no repository
    return any(matches(name, pattern) for pattern in patterns)


def refusal(word: str, facts: ImageFacts, what: str) -> Denied:
    """The one-line denial for an image `may_use` refused."""
    name = facts.tags[0] if facts.tags else facts.ident[7:19]
    shown = repr(word) if word in facts.tags else f"{word!r} ({name})"
    # Stops: `docker run <the operator's image> env` (or cat of any file in it) printing what
    # `image inspect` redacts, and the same content read through FROM, COPY --from or a mount.
    return Denied(f"{what} {shown} is not yours to use: you neither built nor pulled it, it carries no "
                  "digest from a registry [images] allowed admits, and [images] shared does not list it; "
                  "pull it from an allowed registry, build your own, or ask the operator to add it to "
                  "[images] shared", rule=RULE)
