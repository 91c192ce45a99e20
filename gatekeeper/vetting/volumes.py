"""Named volumes: only the agent's own, and only as contained as their driver options.

* `docker volume create -o type=none -o o=bind -o device=/srv` (made by root for
  its own services, or by anyone with engine access) turns a *name* into a bind
  of a host directory, which the host-path rule never sees. So every named
  volume a command mounts is looked up with one engine query; one that exists
  with a non-local driver or any driver option is refused.
* An existing volume that does not carry the agent's owner label (and that
  [shared] volumes does not name) is refused: `-v pgdata:/d` would read or wipe
  the operator's database files.
* A volume that does not exist yet is the agent's: for run/create the decision
  asks execution (gatekeeper.steps) to create it first, plain and labelled
  gatekeeper.owner=<profile>, so rm and prune can reach it later; compose creates
  a project's volumes itself, with the labels gatekeeper put into the model.
  Names under `gatekeeper-` are ours (pull records), never the agent's.
"""

from __future__ import annotations

from gatekeeper.engine_objects import only_not_found
from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.vetting.context import Context

# Tab-separated, one line per existing volume; names go after `--`, never into the template.
VOLUME_FORMAT = "{{.Name}}\t{{.Driver}}\t{{json .Options}}\t{{json .Labels}}"
PLAIN_OPTIONS = ("null", "{}", "")
RESERVED_VOLUME_PREFIX = "gatekeeper-"
CREATE_VOLUME = "volume-create"  # the prepared step's name (gatekeeper.steps)


def check_existing_volumes(ctx: Context) -> None:
    names = sorted(set(ctx.vetted.named_volumes))
    if not names:
        return
    found = existing_volumes(ctx, names)
    made_by_compose = compose_model_volumes(ctx)
    for name in names:
        if name in found:
            check_volume(ctx, name, *found[name])
        else:
            prepare_new_volume(ctx, name, made_by_compose)


def compose_model_volumes(ctx: Context) -> set[str]:
    """The project's own volumes, which compose creates with the owner label in the
    model; `compose run -v NEW:/d` is not one of them and is created like run's."""
    model = ctx.vetted.compose_model
    if not ctx.located.canonical.startswith("compose ") or model is None:
        return set()
    from gatekeeper.vetting.compose import model_volume_names

    return set(model_volume_names(model))


def existing_volumes(ctx: Context, names: list[str]) -> dict[str, tuple[str, str, str]]:
    """name -> (driver, options JSON, labels JSON) for the names that exist, in one query."""
    args = ["volume", "inspect", "--format", VOLUME_FORMAT, "--", *names]
    status, out, err = ctx.world.run_docker(ctx.policy, args)
    # A missing volume makes docker exit 1 after printing the ones it found (and
    # an empty line when it found none): only the lines printed matter, and a
    # name not printed does not exist. Any other failure (the engine does not
    # answer) must not read as "none exist": an existing foreign volume would pass.
    if status != 0 and not only_not_found(err):
        raise Denied(f"cannot ask the engine about volumes: {err.decode('utf-8', 'replace').strip()[:200]!r}",
                     rule="volume-backed")
    found = {}
    for line in out.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4 or fields[0] not in names:
            raise Denied(f"unexpected answer from the engine about volumes: {line[:120]!r}",
                         rule="volume-backed")
        found[fields[0]] = (fields[1], fields[2], fields[3])
    return found


def check_volume(ctx: Context, name: str, driver: str, options: str, labels: str) -> None:
    if driver != "local" or options.strip() not in PLAIN_OPTIONS:
        raise Denied(
            f"volume {name!r} exists with driver {driver!r} and options {options.strip()[:120]}: "
            "a volume with driver options can be a bind of a host directory or a remote mount; "
            "mount a volume of your own (a new name) or a directory under the allowed roots",
            rule="volume-backed",
        )
    from gatekeeper.engine_objects import json_labels
    from gatekeeper.label_rules import check_shared_or_owned

    check_shared_or_owned(ctx, "volume", name, json_labels(labels), "volumes")


def prepare_new_volume(ctx: Context, name: str, made_by_compose: set[str]) -> None:
    if name.lower().startswith(RESERVED_VOLUME_PREFIX):
        # Stops: squatting the names of gatekeeper's own records (pulled images).
        raise Denied(f"volume names starting with {RESERVED_VOLUME_PREFIX!r} are gatekeeper's own; "
                     "choose another name", rule="foreign-volume")
    if name not in made_by_compose:
        from gatekeeper.name_prefix import VOLUME, check_name

        check_name(ctx.policy.name_prefix, VOLUME, name, "new volume")  # [names] prefix
        step = (CREATE_VOLUME, name)
        if step not in ctx.vetted.prepare:
            ctx.vetted.prepare.append(step)
