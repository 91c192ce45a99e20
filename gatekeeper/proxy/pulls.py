"""Pull records at the API layer: the proxy's own engine steps after an allowed request
(ApiVerdict.afterwards), with the CLI layer's meaning (gatekeeper.steps).

The engine cannot label a pulled image, so a pull the agent made is recorded: a volume
`gatekeeper-pull-<hash>` with labels gatekeeper.pulled-by / pulled-image / pulled-tag, which
only gatekeeper can make (both layers refuse gatekeeper.* labels and gatekeeper-* volume
names to the agent). Behind the proxy the CLI layer's own record would be such a refusal,
so the proxy makes it (and the CLI layer leaves it to the proxy: gatekeeper.policy.through_proxy).

* ("pull-record", REF, "new"|"owned"): after POST /images/create answered 200 and its progress
  stream ended with docker's "Status:" line and no error, the image REF names now is recorded
  as pulled by the profile under REF's tag ("" for a pull by digest). Only that tag: a tag the
  operator puts on the same image (before or after) is not the agent's, and an image carrying
  any tag without this profile's record stays out of its reach (pulled_by_agent).
* ("pull-forget", IMAGE_ID): after DELETE /images/{name} answered 200, once the image is gone,
  this profile's records of it go too (a later pull of the same image by the operator must
  not find the agent's old record).
* ("build-record", IMAGE_ID): after POST /build answered 200 and its stream ended without an
  error, the image the classic builder's answer names (`{"aux":{"ID":...}}`, read by the
  transport: gatekeeper.build_records.built_image) is recorded as built by the profile, if it
  carries the profile's owner label. ("build-forget", IMAGE_ID): as pull-forget, after an
  rmi of an image the agent built.

A step that cannot be taken is a warning, never a failure of the request (the engine already
acted): the worst case is an image the agent cannot remove.
"""

from __future__ import annotations

from urllib.parse import quote

from gatekeeper.owner import PULLED_BY, PULLED_IMAGE, PULLED_TAG
from gatekeeper.steps import RECORD_PREFIX, record_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class RecordingEngine(Protocol):
        def get_json(self, target: str) -> tuple[int, object]: ...
        def create_volume(self, name: str, labels: dict[str, str]) -> tuple[int, object]: ...
        def remove_volume(self, name: str) -> tuple[int, object]: ...

# What ends a pull's progress stream that succeeded: docker's last message, in both image stores.
PULL_DONE = b'"status":"Status: '
PULL_FAILED = b'"errorDetail":'
TAIL = 16384  # bytes of a stream's end kept to judge it (its last messages: a build's ID and tags)


def pull_succeeded(tail: bytes) -> bool:
    """The end of a pull's progress stream says it succeeded: docker's "Status:" message
    and no error message. The error is the stream's last message when there is one."""
    return PULL_DONE in tail and PULL_FAILED not in tail


def take_step(engine: RecordingEngine, profile: str, step: tuple[str, ...]) -> str | None:
    """Take one step; a warning (what could not be done) or None."""
    try:
        if step[0] == "pull-record":
            return record_pull(engine, profile, step[1])
        if step[0] == "pull-forget":
            return forget_pull(engine, profile, step[1])
        if step[0] == "build-record":
            return record_build(engine, profile, step[1])
        if step[0] == "build-forget":
            return forget_build(engine, profile, step[1])
    except Exception as error:  # noqa: BLE001 - the engine did not answer: a warning
        return f"{step[0]}: the engine did not answer ({type(error).__name__})"
    return f"unknown step {step[0]!r}"


def record_pull(engine: RecordingEngine, profile: str, ref: str) -> str | None:
    status, image = engine.get_json(f"/images/{quote(ref, safe=':@/')}/json")
    ident = image.get("Id") if isinstance(image, dict) else None
    if status != 200 or not isinstance(ident, str) or not ident.startswith("sha256:"):
        return f"cannot record the pull of {ref!r}: the image is not there"
    tag = "" if "@" in ref else ref
    tags = image.get("RepoTags") if isinstance(image, dict) else None
    if tag and tag not in (tags if isinstance(tags, list) else []):
        return f"cannot record the pull of {ref!r}: the tag names another image now"
    labels = {PULLED_BY: profile, PULLED_IMAGE: ident, PULLED_TAG: tag}
    status, volume = engine.create_volume(record_name(profile, ident, tag), labels)
    made = volume.get("Labels") if isinstance(volume, dict) else None
    if status not in (200, 201) or made != labels:
        return f"cannot record the pull of {ref!r}"
    return None


def forget_pull(engine: RecordingEngine, profile: str, ident: str) -> str | None:
    return forget_records(engine, profile, ident, (PULLED_BY, PULLED_IMAGE, RECORD_PREFIX), "pulls")


def forget_records(engine: RecordingEngine, profile: str, ident: str, kind: tuple[str, str, str],
                   what: str) -> str | None:
    """The profile's records of an image that is gone; `kind` is (by label, image label, volume
    name prefix): pull records here, build records (gatekeeper.build_records)."""
    from gatekeeper.proxy.objects import filters_query

    by, image, prefix = kind
    status, _ = engine.get_json(f"/images/{quote(ident, safe=':')}/json")
    if status == 200:
        return None  # still there (another tag, or in use): keep the record
    if status != 404:
        return f"cannot forget the {what} of {ident[:19]}: engine status {status}"
    filters = filters_query({"label": [f"{by}={profile}", f"{image}={ident}"]})
    status, listing = engine.get_json("/volumes?filters=" + filters)
    volumes = listing.get("Volumes") if isinstance(listing, dict) else None
    if status != 200 or not isinstance(volumes, list):
        return f"cannot forget the {what} of {ident[:19]}: engine status {status}"
    names = [str(v.get("Name")) for v in volumes if isinstance(v, dict)]
    failed = [name for name in names if name.startswith(prefix)
              and engine.remove_volume(name)[0] not in (204, 404)]
    return f"cannot forget the {what} of {ident[:19]}" if failed else None


def record_build(engine: RecordingEngine, profile: str, ident: str) -> str | None:
    from gatekeeper.build_records import record_labels, record_name
    from gatekeeper.owner import OWNER_LABEL

    status, image = engine.get_json(f"/images/{quote(ident, safe=':')}/json")
    config = image.get("Config") if isinstance(image, dict) else None
    labels = config.get("Labels") if isinstance(config, dict) else None
    if status != 200 or not isinstance(image, dict) or image.get("Id") != ident:
        return f"cannot record the build of {ident[:19]}: the image is not there"
    if not isinstance(labels, dict) or labels.get(OWNER_LABEL) != profile:
        return f"cannot record the build of {ident[:19]}: it does not carry your owner label"
    made_labels = record_labels(profile, ident)
    status, volume = engine.create_volume(record_name(profile, ident), made_labels)
    made = volume.get("Labels") if isinstance(volume, dict) else None
    if status not in (200, 201) or made != made_labels:
        return f"cannot record the build of {ident[:19]}"
    return None


def forget_build(engine: RecordingEngine, profile: str, ident: str) -> str | None:
    from gatekeeper.build_records import RECORD_PREFIX as BUILT_PREFIX
    from gatekeeper.owner import BUILT_BY, BUILT_IMAGE

    return forget_records(engine, profile, ident, (BUILT_BY, BUILT_IMAGE, BUILT_PREFIX), "builds")
