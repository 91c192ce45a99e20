"""Existing named volumes: a volume is only as contained as its driver options.

`docker volume create -o type=none -o o=bind -o device=/srv` (made by root for
its own services, or by anyone with engine access) turns a *name* into a bind
of a host directory, which the host-path rule never sees. So every named
volume a command mounts is looked up with one engine query; one that exists
with a non-local driver or any driver option is refused. A volume that does
not exist yet is created plain by docker (the agent cannot pass options: `volume
create` is not allowed, and `--mount volume-opt=` is refused).
"""

from __future__ import annotations

from gatekeeper.errors import Denied

# Tab-separated, one line per existing volume; names go after `--`, never into the template.
VOLUME_FORMAT = "{{.Name}}\t{{.Driver}}\t{{json .Options}}"
PLAIN_OPTIONS = ("null", "{}", "")


def check_existing_volumes(ctx: object) -> None:
    names = sorted(set(ctx.vetted.named_volumes))  # type: ignore[attr-defined]
    if not names:
        return
    args = ["volume", "inspect", "--format", VOLUME_FORMAT, "--", *names]
    _status, out, _err = ctx.world.run_docker(ctx.policy, args)  # type: ignore[attr-defined]
    # A missing volume makes docker exit 1 after printing the ones it found:
    # only the lines printed matter, and a name not printed does not exist.
    for line in out.decode("utf-8", "replace").splitlines():
        check_volume_line(line, names)


def check_volume_line(line: str, names: list[str]) -> None:
    fields = line.split("\t")
    if len(fields) != 3 or fields[0] not in names:
        raise Denied(f"unexpected answer from the engine about volumes: {line[:120]!r}",
                     rule="volume-backed")
    name, driver, options = fields
    if driver != "local" or options.strip() not in PLAIN_OPTIONS:
        raise Denied(
            f"volume {name!r} exists with driver {driver!r} and options {options.strip()[:120]}: "
            "a volume with driver options can be a bind of a host directory or a remote mount; "
            "mount a volume of your own (a new name) or a directory under the allowed roots",
            rule="volume-backed",
        )
