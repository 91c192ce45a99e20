"""Engine steps around an allowed command: what the pure decision asked for
(Decision.prepare / Decision.afterwards) and execution does, with the same
pinned binary and clean environment as the command itself.

* ("volume-create", NAME), before a run/create that mounts a volume that did not
  exist at decision time: `docker volume create --label gatekeeper.owner=P NAME`,
  then the volume is read back and must be plain and the agent's (if someone
  made one of that name in between, create is a no-op and keeps their labels:
  then nothing runs).
* ("pull-record", REF, "new"|"owned"), around a pull: before it, the tags that
  exist; after it succeeded, REF's tag ("" for a pull by digest) on the image it
  names now is recorded as pulled by the profile. A record is a volume
  `gatekeeper-pull-<hash>` with labels gatekeeper.pulled-by / pulled-image /
  pulled-tag: labels under gatekeeper. are refused to the agent in every
  spelling, so only gatekeeper can make one. A tag that existed before and was
  not the agent's ("new" at decision time, present now: a race) is not recorded.
* ("pull-forget", IMAGE_ID), after an rmi of an image the agent pulled: once the
  image is gone, its records go too.
* ("build-record", TAG, ...), after a build (docker build -t, compose build): the image each
  TAG names now is recorded as built by the profile (gatekeeper.build_records), if it
  carries the profile's owner label and was created after the command started.
* ("build-forget", IMAGE_ID), after an rmi of an image the agent built: once it is gone,
  its build records go too.
"""

from __future__ import annotations

from gatekeeper.owner import BUILT_BY, BUILT_IMAGE, OWNER_LABEL, PULLED_BY, PULLED_IMAGE, PULLED_TAG

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy

RECORD_PREFIX = "gatekeeper-pull-"
TIMEOUT = 60.0


class StepFailed(Exception):
    """A prepared step that did not leave the engine as the decision needs it."""


def docker(policy: Policy, args: list[str]) -> tuple[int, str, str]:
    from gatekeeper.worlds import RealWorld

    status, out, err = RealWorld().run_docker(policy, args, None, TIMEOUT)
    return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def run_prepared(policy: Policy, steps: list[tuple[str, ...]]) -> dict[str, dict[str, str]]:
    """Take the steps before the command; returns what the afterwards steps need.
    Raises StepFailed: the command must not run."""
    state: dict[str, dict[str, str]] = {}
    for step in steps:
        if step[0] == "volume-create":
            create_owned_volume(policy, step[1])
        else:
            raise StepFailed(f"unknown prepared step {step[0]!r}")
    return state


def snapshot_before(policy: Policy, afterwards: list[tuple[str, ...]]) -> dict[str, str]:
    """tag -> image ID, before a pull (only when one is to be recorded)."""
    if not any(step[0] == "pull-record" for step in afterwards):
        return {}
    listing = ["image", "ls", "--no-trunc", "--format", "{{.ID}}\t{{.Repository}}:{{.Tag}}"]
    status, out, _ = docker(policy, listing)
    if status != 0:
        raise StepFailed("cannot list the images before the pull")
    return {tag: ident for ident, _, tag in (line.partition("\t") for line in out.splitlines()) if tag}


def run_afterwards(policy: Policy, steps: list[tuple[str, ...]], before: dict[str, str],
                   started: float = 0.0) -> list[str]:
    """After the command (begun at `started`, epoch seconds) succeeded; returns warnings (the
    command already ran)."""
    warnings = []
    for step in steps:
        try:
            if step[0] == "pull-record":
                record_pull(policy, step[1], step[2], before)
            elif step[0] == "pull-forget":
                forget_pull(policy, step[1])
            elif step[0] == "build-record":
                record_builds(policy, list(step[1:]), started)
            elif step[0] == "build-forget":
                forget_build(policy, step[1])
        except StepFailed as error:
            warnings.append(str(error))
    return warnings


def create_owned_volume(policy: Policy, name: str) -> None:
    from gatekeeper.engine_objects import json_labels
    from gatekeeper.vetting.volumes import PLAIN_OPTIONS, VOLUME_FORMAT

    owner = policy.profile
    status, _, err = docker(policy, ["volume", "create", "--label", f"{OWNER_LABEL}={owner}", "--", name])
    if status != 0:
        raise StepFailed(f"cannot create volume {name!r}: {err.strip()[:200]}")
    status, out, _ = docker(policy, ["volume", "inspect", "--format", VOLUME_FORMAT, "--", name])
    fields = out.strip("\n").split("\t")
    if status != 0 or len(fields) != 4 or fields[0] != name:
        raise StepFailed(f"cannot read back volume {name!r}")
    _, driver, options, labels = fields
    mine = json_labels(labels).get(OWNER_LABEL) == owner
    if driver != "local" or options.strip() not in PLAIN_OPTIONS or not mine:
        # Someone made a volume of that name between the decision and now.
        raise StepFailed(f"volume {name!r} appeared meanwhile and is not yours")


def record_name(owner: str, ident: str, tag: str) -> str:
    import hashlib

    digest = hashlib.sha256(f"{owner}\0{ident}\0{tag}".encode()).hexdigest()[:40]
    return RECORD_PREFIX + digest


def record_pull(policy: Policy, ref: str, when: str, before: dict[str, str]) -> None:
    """Record the tag the pull put on the image (REF's; "" for a pull by digest). Only that
    tag: another tag on the same image (the operator's, before or during the pull) is not
    the agent's, and keeps the image out of its reach (vetting.namespaces.pulled_by_agent).
    The proxy records its pulls with the same meaning (gatekeeper.proxy.pulls)."""
    import json

    if when == "new" and ref in before:
        return  # the tag appeared between the decision and the pull: not the agent's
    inspect = ["image", "inspect", "--format", "{{.Id}}\t{{json .RepoTags}}", "--", ref]
    status, out, _ = docker(policy, inspect)
    ident, _, tags = out.strip().partition("\t")
    if status != 0 or not ident.startswith("sha256:"):
        raise StepFailed(f"cannot record the pull of {ref!r}: the image is not there")
    tag = "" if "@" in ref else ref
    if tag and tag not in (json.loads(tags or "null") or []):
        raise StepFailed(f"cannot record the pull of {ref!r}: the tag names another image now")
    owner = policy.profile
    labels = [f"{PULLED_BY}={owner}", f"{PULLED_IMAGE}={ident}", f"{PULLED_TAG}={tag}"]
    args = ["volume", "create", *(w for label in labels for w in ("--label", label)), "--",
            record_name(owner, ident, tag)]
    if docker(policy, args)[0] != 0:
        raise StepFailed(f"cannot record the pull of {ref!r}")


def forget_pull(policy: Policy, ident: str) -> None:
    forget_records(policy, ident, PULLED_BY, PULLED_IMAGE, RECORD_PREFIX)


def forget_records(policy: Policy, ident: str, by: str, image: str, prefix: str) -> None:
    """The profile's records (volumes named `prefix`..., labelled by=<profile>, image=<ident>)
    of an image that is gone: pull records here, build records (gatekeeper.build_records)."""
    if docker(policy, ["image", "inspect", "--format", "{{.Id}}", "--", ident])[0] == 0:
        return  # still there (another tag, or in use): keep the record
    status, out, _ = docker(policy, ["volume", "ls", "-q", "--filter", f"label={by}={policy.profile}",
                                     "--filter", f"label={image}={ident}"])
    names = [n for n in out.split() if n.startswith(prefix)]
    if status == 0 and names:
        docker(policy, ["volume", "rm", "--", *names])


# ---------------------------------------------------------------- build records


class BuiltLater:
    """The image IDs the profile's build records name (gatekeeper.build_records), asked of the
    engine the first time an image's ownership is in question (a redaction filter's)."""

    __slots__ = ("policy", "known")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.known: frozenset[str] | None = None

    def __contains__(self, ident: object) -> bool:
        if self.known is None:
            self.known = frozenset(recorded_builds(self.policy))
        return ident in self.known


def recorded_builds(policy: Policy) -> set[str]:
    """The image IDs this profile's build records name; none when the engine cannot say."""
    args = ["volume", "ls", "--filter", f"label={BUILT_BY}={policy.profile}",
            "--format", f'{{{{.Label "{BUILT_IMAGE}"}}}}|']
    status, out, _ = docker(policy, args)
    if status != 0:
        return set()
    return {line[:-1] for line in out.splitlines() if line.startswith("sha256:") and line.endswith("|")}


IMAGE_FACTS = '{{.Id}}\t{{.Created}}\t{{json .Config.Labels}}'


def record_builds(policy: Policy, tags: list[str], started: float) -> None:
    """Record the images the build's tags name now, each made by this build (its owner
    label, created after the command started): gatekeeper.build_records."""
    from gatekeeper.build_records import record_labels, record_name, worth_recording
    from gatekeeper.engine_objects import json_labels

    owner, failed = policy.profile, []
    for tag in dict.fromkeys(tags):
        status, out, _ = docker(policy, ["image", "inspect", "--format", IMAGE_FACTS, "--", tag])
        ident, created, labels = [*out.strip().split("\t", 2), "", "", ""][:3]
        if status != 0 or not ident.startswith("sha256:"):
            failed.append(tag)
            continue
        if not worth_recording(json_labels(labels), owner, created, started):
            continue  # not made by this command (compose did not rebuild it), or not ours
        made = record_labels(owner, ident)
        labels_args = [w for key, value in made.items() for w in ("--label", f"{key}={value}")]
        args = ["volume", "create", *labels_args, "--", record_name(owner, ident)]
        if docker(policy, args)[0] != 0:
            failed.append(tag)
    if failed:
        raise StepFailed(f"cannot record the build of {', '.join(map(repr, failed))}: run it again to use it")


def forget_build(policy: Policy, ident: str) -> None:
    from gatekeeper.build_records import RECORD_PREFIX as BUILT_PREFIX

    forget_records(policy, ident, BUILT_BY, BUILT_IMAGE, BUILT_PREFIX)
