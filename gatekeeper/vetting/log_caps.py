"""Log caps, policy [limits] log_max_size / log_max_file: container logs stay bounded.

Under docker's default json-file driver a container's log grows without bound
on the host's disk; an agent's `while true; do echo; done` fills it without a
single refused command. With the caps set, every `docker run`/`create` gets
`--log-opt max-size=<cap>` and `--log-opt max-file=<cap>` unless the agent gave
smaller ones; a larger or unparseable value is refused. Compose services get the
same in `logging.options` of the model compose is fed (drivers other than
json-file, local and none are refused by the project rules already). The agent cannot pick
another driver (`--log-driver` is refused by the grammar table), so the options
go to the daemon's default driver: json-file and local both honour them (docker
refuses the options, and so the command, under a driver that does not).

Sizes use docker's own parser for these options (go-units FromHumanSize:
decimal units, 1k = 1000 bytes); we accept its plain spellings only: digits and
an optional k, m or g (either case), optionally followed by b.
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.units import DIGITS
from gatekeeper.units import log_size as log_size  # re-exported: gatekeeper.proxy

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy
    from gatekeeper.vetting.context import Context

def log_file_count(text: str) -> int | None:
    if not text or not set(text) <= DIGITS or text[0] == "0":
        return None
    return int(text)


def log_caps(policy: Policy) -> tuple[str, int]:
    return policy.caps.log_max_size, policy.caps.log_max_file


def vet_log_caps(ctx: Context) -> None:
    """docker run/create: the agent's max-size/max-file within the caps, the caps for absent ones."""
    max_size, max_file = log_caps(ctx.policy)
    if not (max_size or max_file):
        return
    given = check_given(ctx, max_size, max_file)
    words = []
    if max_size and "max-size" not in given:
        words += ["--log-opt", f"max-size={max_size}"]
    if max_file and "max-file" not in given:
        words += ["--log-opt", f"max-file={max_file}"]
    if words:
        ctx.insert_after_command(words)  # before `--` and the image


def check_given(ctx: Context, max_size: str, max_file: int) -> set[str]:
    given = set()
    for use in ctx.parsed.uses:
        if use.flag.long != "log-opt":
            continue
        key, _, value = (use.value or "").partition("=")
        check_option(key, value, (max_size, max_file), use.spelled, use.value)
        given.add(key)
    return given


def check_option(key: str, value: str, caps: tuple[str, int], what: str, shown: object) -> None:
    """One max-size / max-file value within its cap (other keys are not ours)."""
    max_size, max_file = caps
    if key == "max-size" and max_size:
        size = log_size(value)
        if size is None or size > (log_size(max_size) or 0):
            # Stops: a log that grows until the host's disk is full.
            raise over_log_cap(what, shown, f"logs are capped at {max_size} per file")
    elif key == "max-file" and max_file:
        count = log_file_count(value)
        if count is None or count > max_file:
            raise over_log_cap(what, shown, f"container logs are capped at {max_file} files")


# ---------------------------------------------------------------- compose


def vet_compose_log_caps(ctx: Context, model: dict[str, object]) -> None:
    """compose: every service's `logging.options` within the caps, the caps set where absent.
    Changes `model` in place: it is what compose is fed (all subcommands alike, so the
    services' config hash does not change between `up` and the next command)."""
    caps = log_caps(ctx.policy)
    services = model.get("services")
    if not any(caps) or not isinstance(services, dict):
        return
    for name, service in services.items():
        if isinstance(service, dict):
            cap_service_logging(str(name), service, caps)


def cap_service_logging(name: str, service: dict[str, object], caps: tuple[str, int]) -> None:
    logging = service.setdefault("logging", {})
    if not isinstance(logging, dict):
        raise Denied(f"compose service {name!r}: logging must be a mapping", rule="limit-logs")
    if logging.get("driver") == "none":
        return  # no log is kept at all (and the driver takes no options)
    options = logging.setdefault("options", {})
    if options is None:
        options = logging["options"] = {}
    if not isinstance(options, dict):
        raise Denied(f"compose service {name!r}: logging.options must be a mapping", rule="limit-logs")
    for key in ("max-size", "max-file"):
        if key in options:
            what = f"compose service {name!r}: logging.options.{key}"
            check_option(key, str(options[key]), caps, what, str(options[key]))
    max_size, max_file = caps
    if max_size and "max-size" not in options:
        options["max-size"] = max_size
    if max_file and "max-file" not in options:
        options["max-file"] = str(max_file)


def over_log_cap(what: str, value: object, why: str) -> Denied:
    return Denied(f"{what} {value!r} is not allowed: {why} (policy [limits]); leave it out to get the cap",
                  rule="limit-logs")
