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
  any tag without this profile's record stays out of its reach (pulled_by_agent). The record
  pins the image object as the CLI layer's does (gatekeeper.owner.PULLED_TAG_TIME): the proxy
  re-applies the tag (POST /images/{REF}/tag; a pull by digest: a random tag, removed at once)
  and records the LastTagTime that gave the image.
* ("pull-forget", IMAGE_ID): after DELETE /images/{name} answered 200, once the image is gone,
  this profile's records of it go too (a later pull of the same image by the operator must
  not find the agent's old record).
* ("build-record", IMAGE_ID): after POST /build answered 200 and its stream ended without an
  error, the image the classic builder's answer names (`{"aux":{"ID":...}}`, read by the
  transport: gatekeeper.build_records.built_image) is recorded as built by the profile, if it
  carries the profile's owner label. ("build-forget", IMAGE_ID): as pull-forget, after an
  rmi of an image the agent built.
* ("records-sweep",): after POST /images/prune answered 200, the profile's pull and build
  records that can never count again go (gatekeeper.steps.stale_records).

A step that cannot be taken is a warning, never a failure of the request (the engine already
acted): the worst case is an image the agent cannot remove.
"""

from __future__ import annotations

from urllib.parse import quote

from gatekeeper.owner import PULLED_BY, PULLED_IMAGE, PULLED_TAG, PULLED_TAG_TIME, tag_time_pin
from gatekeeper.steps import RECORD_PREFIX, pin_tag, record_name, renewed_records

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class RecordingEngine(Protocol):
        def get_json(self, target: str) -> tuple[int, object]: ...
        def create_volume(self, name: str, labels: dict[str, str]) -> tuple[int, object]: ...
        def remove_volume(self, name: str) -> tuple[int, object]: ...
        def tag_image(self, name: str, repository: str, tag: str) -> tuple[int, object]: ...
        def remove_image(self, name: str) -> tuple[int, object]: ...

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
    taken = STEPS.get(step[0])
    if taken is None:
        return f"unknown step {step[0]!r}"
    try:
        return taken(engine, profile, *step[1:2])
    except Exception as error:  # noqa: BLE001 - the engine did not answer: a warning
        return f"{step[0]}: the engine did not answer ({type(error).__name__})"


def image_pin(engine: RecordingEngine, ref: str) -> tuple[str, list[str], str]:
    """(ID, tags, LastTagTime pin) of the image `ref` names now; ("", [], "") none."""
    return pin_of(*engine.get_json(f"/images/{quote(ref, safe=':@/')}/json"))


def pin_of(status: int, image: object) -> tuple[str, list[str], str]:
    """image_pin from the engine's answer to an image's inspect."""
    if status != 200 or not isinstance(image, dict):
        return "", [], ""
    ident, tags, metadata = image.get("Id"), image.get("RepoTags"), image.get("Metadata")
    if not isinstance(ident, str) or not ident.startswith("sha256:"):
        return "", [], ""
    pin = tag_time_pin(metadata.get("LastTagTime") if isinstance(metadata, dict) else None)
    return ident, [str(t) for t in tags] if isinstance(tags, list) else [], pin


def pin_pull(engine: RecordingEngine, ref: str) -> bool:
    """Put a tag on the image `ref` names so that the engine sets its LastTagTime to now
    (gatekeeper.steps.pin_pull): REF itself, or for a pull by digest a random tag removed at once."""
    if "@" not in ref:
        repository, _, tag = ref.rpartition(":")
        return engine.tag_image(ref, repository, tag)[0] in (200, 201)
    repository, tag = pin_tag()
    if engine.tag_image(ref, repository, tag)[0] not in (200, 201):
        return False
    return engine.remove_image(f"{repository}:{tag}")[0] == 200


def record_pull(engine: RecordingEngine, profile: str, ref: str) -> str | None:
    found = pinned(engine, ref)
    if isinstance(found, str):
        return found
    ident, earlier, pin = found
    tag = "" if "@" in ref else ref
    recorded, stale = renewed_records(pull_records(engine, profile, ident), earlier, pin, tag)
    for each in recorded:
        labels = {PULLED_BY: profile, PULLED_IMAGE: ident, PULLED_TAG: each, PULLED_TAG_TIME: pin}
        status, volume = engine.create_volume(record_name(profile, ident, each, pin), labels)
        made = volume.get("Labels") if isinstance(volume, dict) else None
        if status not in (200, 201) or made != labels:
            return f"cannot record the pull of {ref!r}"
    for name in stale:
        engine.remove_volume(name)
    return None


def pinned(engine: RecordingEngine, ref: str) -> tuple[str, str, str] | str:
    """pin_pull on the image `ref` names: (its ID, its LastTagTime before, if the pull had not
    moved the tag, and after), or why there is nothing to record (gatekeeper.steps.pinned)."""
    first, _, earlier = image_pin(engine, ref)
    if not first:
        return f"cannot record the pull of {ref!r}: the image is not there"
    if not pin_pull(engine, ref):
        return f"cannot record the pull of {ref!r}: the image could not be tagged"
    ident, tags, pin = image_pin(engine, ref)
    if not ident or ("@" not in ref and ref not in tags):
        return f"cannot record the pull of {ref!r}: the tag names another image now"
    if not pin:
        return f"cannot record the pull of {ref!r}: the engine gives the image no LastTagTime"
    return ident, earlier if first == ident else "", pin


def pull_records(engine: RecordingEngine, profile: str, ident: str) -> list[tuple[str, str, str]]:
    """(name, tag, pin) of the profile's pull records of image `ident`; none when the engine
    cannot say (then none carries over)."""
    from gatekeeper.proxy.objects import filters_query

    filters = filters_query({"label": [f"{PULLED_BY}={profile}", f"{PULLED_IMAGE}={ident}"]})
    status, listing = engine.get_json("/volumes?filters=" + filters)
    volumes = listing.get("Volumes") if isinstance(listing, dict) else None
    if status != 200 or not isinstance(volumes, list):
        return []
    found = []
    for volume in volumes:
        labels = volume.get("Labels") if isinstance(volume, dict) else None
        ours = isinstance(labels, dict) and labels.get(PULLED_BY) == profile
        if ours and isinstance(labels, dict) and labels.get(PULLED_IMAGE) == ident:
            found.append((str(volume.get("Name")), str(labels.get(PULLED_TAG, "")),
                          str(labels.get(PULLED_TAG_TIME, ""))))
    return found


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


def sweep_records(engine: RecordingEngine, profile: str) -> str | None:
    """records-sweep (gatekeeper.steps.sweep_records): one GET per image the records name; an
    engine that cannot say whether one exists sweeps nothing."""
    from gatekeeper.owner import BUILT_BY, BUILT_IMAGE
    from gatekeeper.steps import stale_records

    pulls = profile_records(engine, profile, (PULLED_BY, PULLED_IMAGE, PULLED_TAG_TIME))
    built = profile_records(engine, profile, (BUILT_BY, BUILT_IMAGE, ""))
    if pulls is None or built is None:
        return "records-sweep: cannot list your records"
    builds = [(name, ident) for name, ident, _ in built]
    images = {}
    for ident in sorted({ident for _, ident, _ in pulls} | {ident for _, ident in builds}):
        status, image = engine.get_json(f"/images/{quote(ident, safe=':@/')}/json")
        found, _, pin = pin_of(status, image)
        if found:
            images[ident] = pin
        elif status != 404:
            return "records-sweep: the engine did not say which images it has"
    for name in stale_records(pulls, builds, images):
        engine.remove_volume(name)
    return None


def profile_records(engine: RecordingEngine, profile: str,
                    labels: tuple[str, str, str]) -> list[tuple[str, str, str]] | None:
    """(name, image ID, pin label or "") of the profile's records labelled (by, image, pin)."""
    from gatekeeper.proxy.objects import filters_query

    by, image, pin = labels
    status, listing = engine.get_json("/volumes?filters=" + filters_query({"label": [f"{by}={profile}"]}))
    volumes = listing.get("Volumes") if isinstance(listing, dict) else None
    if status != 200 or not isinstance(volumes, list):
        return None
    found = []
    for volume in volumes:
        named = volume.get("Labels") if isinstance(volume, dict) else None
        if isinstance(named, dict) and named.get(by) == profile:
            pinned = str(named.get(pin, "")) if pin else ""
            found.append((str(volume.get("Name")), str(named.get(image, "")), pinned))
    return found


# step name -> what takes it (engine, profile, its argument if any)
STEPS: dict[str, Callable[..., str | None]] = {
    "pull-record": record_pull, "pull-forget": forget_pull, "build-record": record_build,
    "build-forget": forget_build, "records-sweep": sweep_records,
}
