"""Image labels the proxy has seen, by content-addressed image ID, for the decision's
ownership proof (gatekeeper.proxy.objects.proven).

A container's owner label counts only when its create set it, not its image: so every
inspect, stop or logs of an owned container asked the engine a second question, the
container's image by ID, for the image's labels. An image ID (`sha256:<64 hex>`) is the
digest of the image's config (or, in containerd's store, of a manifest that names the
config by digest), and the labels are part of that config: the labels of one ID never
change. So the answer to `GET /images/sha256:<id>/json` is remembered as its labels alone
(not the answer: its tags, its dates and whether it still exists do change, and other
decisions ask that question for those), and the proof asks the engine only for an image
ID not seen yet. Only an exact content-addressed target whose answer names the same ID
is learned; tags, short IDs, prefixes and versioned targets are not.
"""

from __future__ import annotations

MAX_KEPT = 1024  # distinct image IDs; past that, all are forgotten
ID_HEX = 64
PREFIX = "/images/sha256:"
SUFFIX = "/json"
HEX = frozenset("0123456789abcdef")


class ImageLabels:
    """image ID -> its labels (str -> str), as the engine answered for that ID."""

    __slots__ = ("labels",)

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, str]] = {}

    def known(self, image: str) -> dict[str, str] | None:
        """The labels of `image` (a full `sha256:` ID), None when not seen (the engine is asked)."""
        labels = self.labels.get(image)
        return dict(labels) if labels is not None else None

    def learn(self, target: str, status: int, answer: object) -> None:
        """An engine answer to a decision's question: kept when it is a content-addressed image's."""
        image = image_of(target)
        if image is None or status != 200 or not isinstance(answer, dict) or answer.get("Id") != image:
            return
        config = answer.get("Config")
        labels = config.get("Labels") if isinstance(config, dict) else None
        if labels is not None and not isinstance(labels, dict):
            return  # not what an image's config holds: never remembered
        if len(self.labels) >= MAX_KEPT:
            self.labels.clear()
        self.labels[image] = {str(k): str(v) for k, v in (labels or {}).items()}


def image_of(target: str) -> str | None:
    """`sha256:<64 hex>` when `target` is exactly `/images/sha256:<64 hex>/json`."""
    if not (target.startswith(PREFIX) and target.endswith(SUFFIX)):
        return None
    digest = target[len(PREFIX):-len(SUFFIX)]
    if len(digest) != ID_HEX or not HEX.issuperset(digest):
        return None
    return "sha256:" + digest
