"""Build records: which images a profile built, by image ID (both layers).

Image labels are inherited. An image the agent builds carries `gatekeeper.owner=<profile>`
(injected into its build), and so does every image built FROM it, every commit of a
container of it and every image whose base chain includes it: the operator's
`FROM ai-app` + `ENV DB_PASSWORD=...` would be the agent's to inspect unredacted, run,
remove, tag and build from. The owner label therefore proves nothing alone (as for
containers, gatekeeper.owner.proven_labels): an image is a profile's only when a build record
of that profile names the image's ID (gatekeeper.owner.proven_image_labels).

Why a record and not a proof inside the image (a label binding its history length or its
parent's ID): gatekeeper writes the label before the build and cannot know the final history;
the classic builder's Parent is empty under BuildKit and in the containerd store, history
entries carry no IDs, and whatever a label says is inherited by the next build just the same,
so a descendant could only be told apart by re-deriving the chain, which neither builder
states. The image ID can: it is the digest of the image's config (history, rootfs diff IDs,
Env, labels, created time), so a descendant, a commit or a rebuild with other steps has
another ID, and a record of one ID can never be claimed by another image. A re-tag keeps
the ID (the same content, still the agent's); a stale record (its image gone) can only ever
match that same content again, so pruning records is housekeeping, not security: they go
when the agent removes the image through gatekeeper ("build-forget").

A record is a volume `gatekeeper-built-<hash>` labelled gatekeeper.built-by=<profile> and
gatekeeper.built-image=<ID>: labels under gatekeeper. and volume names under gatekeeper- are
refused to the agent at both layers, and the volume carries no owner label, so the agent can
neither make, remove nor prune one. It is made after a build succeeded:

* CLI layer (gatekeeper.steps, "build-record"): after `docker build -t ...` or a compose build
  exited 0, each tag the build put on its image is inspected, and recorded only if its image
  carries the profile's owner label and was created after the command started (a tag not
  rebuilt, or re-pointed at an older image in between, is not recorded). A build without a
  tag leaves its image unrecorded: not the agent's (fail closed; tag it when building).
* API layer (gatekeeper.proxy.pulls, "build-record"): the classic builder's own answer names
  the image it made (`{"aux":{"ID":"sha256:..."}}`; for a quiet build, `q=1`, the one stream
  line `{"stream":"sha256:...\\n"}`), read from the end of the build's stream, which ended
  without an error, and that ID is recorded when it carries the owner label.

Images labelled before records existed are not the agent's (fail closed): it rebuilds them
(or the operator removes them). The day's work is unaffected: every build records its image.
"""

from __future__ import annotations

import re

from gatekeeper.owner import BUILT_BY, BUILT_IMAGE, OWNER_LABEL

RECORD_PREFIX = "gatekeeper-built-"
# The classic builder's message naming the image it built (one per build; the last one counts).
# A step's output reaches the stream only JSON-escaped inside "stream" (`\"aux\"`): never this.
AUX_ID = re.compile(rb'"aux":\{"ID":"(sha256:[0-9a-f]{64})"\}')
# A quiet build (`q=1`: the engine buffers every message and, on success, sends only the ID as
# one stream line). Read only for a quiet build: otherwise a RUN step printing an ID makes it.
QUIET_ID = re.compile(rb'\{"stream":"(sha256:[0-9a-f]{64})\\n"\}')
BUILD_FAILED = b'"errorDetail":'
GO_FALSE = ("", "0", "no", "false", "none")  # the engine's httputils.BoolValue: anything else is true


def record_name(owner: str, ident: str) -> str:
    import hashlib

    return RECORD_PREFIX + hashlib.sha256(f"{owner}\0{ident}".encode()).hexdigest()[:40]


def record_labels(owner: str, ident: str) -> dict[str, str]:
    return {BUILT_BY: owner, BUILT_IMAGE: ident}


def built_image(tail: bytes, *, quiet: bool = False) -> str | None:
    """The image ID a classic build's stream ends with, or None (no ID, or an error after it)."""
    if BUILD_FAILED in tail:
        return None
    found = (QUIET_ID if quiet else AUX_ID).findall(tail)
    return found[-1].decode() if found else None


def quiet_build(values: list[str]) -> bool:
    """The build's `q` as the engine reads it: the first value (Go's FormValue), BoolValue's truth."""
    return bool(values) and values[0].strip().lower() not in GO_FALSE


def worth_recording(labels: dict[str, str], owner: str, created: str, started: float) -> bool:
    """The image carries the owner's label and the engine created it (RFC 3339, UTC) at or
    after `started` (seconds since the epoch, whole seconds compared)."""
    from datetime import UTC, datetime

    if labels.get(OWNER_LABEL) != owner:
        return False
    try:
        made = datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return False
    return made.timestamp() >= int(started)
