"""Flag grammar of the docker compose CLI plugin, as data.

Mirrors docker/compose tag v2.40.3 ("Docker Compose version v2.40.3").
Source files read: cmd/compose/compose.go (RootCommand, addProjectFlags),
cmd/compose/{up,down,ps,logs,start,stop,restart,pull,build,config,list,
images,top,version,create,run,remove,kill,alpha,bridge}.go, cmd/main.go, and
docker/cli v28.2.2 cli-plugins/plugin/plugin.go (the plugin's root command).

Grammar facts the parser must honour:

* Compose's root flags (COMPOSE_GLOBAL) come between ``compose`` and the
  subcommand; the root is non-interspersed (SetInterspersed(false)) with
  TraverseChildren, so they stop at the first positional word, the
  subcommand name.
* ``--dry-run`` is a *persistent* root flag: accepted before the subcommand
  and after it, by every subcommand (it is in every table below).
* ``-h/--help`` comes from the plugin's root (docker's hidden persistent
  help), so every subcommand accepts it.
* pflag NormalizeFunc aliases (extra long spellings, listed as entries):
  up/create ``--y`` -> ``--yes``; down ``--volume`` -> ``--volumes``;
  run ``--volumes`` -> ``--volume`` and ``--labels`` -> ``--label``.
  Normalisation only touches long names, never shorthands.
* Hidden/deprecated flags still parsed: root ``--workdir``, ``--no-ansi``,
  ``--verbose``, ``-v/--version``; build ``--parallel``, ``--compress``,
  ``--force-rm``, ``--no-rm``, ``--progress``; pull ``--parallel``,
  ``--no-parallel``; rm ``-a/--all``; run ``-t/--tty``.
* No flag here has an optional value (NoOptDefVal) beyond pflag bools, and
  there are no count flags. Beware same names with different arity: compose
  ``up/create/run --pull`` take a value, ``build --pull`` is a bool.
* ``up --menu`` defaults to *true* when stdin is a terminal and COMPOSE_MENU
  is unset; the execution layer should set COMPOSE_MENU=false in the child.
"""

# One flag per line keeps each refusal's "why" beside its flag; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

from gatekeeper.grammar.spec import (
    DENY_TRUE,
    ENV_FILE,
    HELP,
    PATH,
    PUBLISH,
    VOLUME,
    Flag,
    b,
    deny_b,
    deny_v,
    table,
    v,
)

# fmt: off

# Persistent root flag, inherited by every subcommand.
_DRY_RUN = b("dry-run")

# cmd/compose/compose.go: addProjectFlags plus RootCommand's own flags.
# Remote -f/--env-file sources (oci://, git URLs) are refused by vetting.
COMPOSE_GLOBAL: dict[str, Flag] = table(
    v("profile"),
    v("project-name", "p"),
    v("file", "f", check=PATH),
    v("env-file", check=ENV_FILE),
    v("project-directory", check=PATH),
    v("workdir", check=PATH),   # hidden, deprecated alias of --project-directory
    b("compatibility"),
    v("progress"),
    b("all-resources"),
    v("ansi"),
    v("parallel"),
    b("version", "v"),          # hidden
    _DRY_RUN,
    b("no-ansi"),               # hidden, deprecated
    b("verbose"),               # hidden
    HELP,
)

# Every compose subcommand (cmd/compose/compose.go AddCommand), so each is
# recognised; policy allows only some. Compose defines no subcommand aliases.
# COMPOSE_COMMANDS (every compose subcommand) lives in grammar.commands: name lookups
# must not pay for importing these tables.
from gatekeeper.grammar.commands import COMPOSE_COMMANDS  # noqa: E402, F401 - re-exported

_WATCH_WHY = "watch syncs host files into containers and rebuilds on change, outside the vetted project"

_UP_CREATE_COMMON: tuple[Flag, ...] = (
    b("build"),
    b("no-build"),
    v("pull"),
    b("quiet-pull"),
    b("force-recreate"),
    b("no-recreate"),
    b("remove-orphans"),
    v("scale"),
    b("yes", "y"),
    b("y"),                     # NormalizeFunc: --y -> --yes (deprecated)
    _DRY_RUN,
    HELP,
)

COMPOSE_FLAGS: dict[str, dict[str, Flag]] = {
    "compose up": table(
        *_UP_CREATE_COMMON,
        b("detach", "d"),
        b("no-color"),
        b("no-log-prefix"),
        b("no-start"),
        b("abort-on-container-exit"),
        b("abort-on-container-failure"),
        v("exit-code-from"),
        v("timeout", "t"),
        b("timestamps"),
        b("no-deps"),
        b("always-recreate-deps"),
        b("renew-anon-volumes", "V"),
        b("quiet-build"),
        v("attach"),
        v("no-attach"),
        b("attach-dependencies"),
        b("wait"),
        v("wait-timeout"),
        deny_b("watch", "w", why=_WATCH_WHY),
        b("menu", check=DENY_TRUE, why="the interactive menu toggles watch mode ('w'): " + _WATCH_WHY),
    ),
    "compose create": table(*_UP_CREATE_COMMON),
    "compose down": table(
        b("remove-orphans"),
        v("timeout", "t"),
        b("volumes", "v"),
        b("volume"),            # NormalizeFunc: --volume -> --volumes (deprecated)
        v("rmi"),
        _DRY_RUN, HELP,
    ),
    "compose ps": table(
        v("format"), v("filter"), v("status"), b("quiet", "q"), b("services"),
        b("orphans"), b("all", "a"), b("no-trunc"), _DRY_RUN, HELP,
    ),
    "compose logs": table(
        b("follow", "f"), v("index"), v("since"), v("until"), b("no-color"),
        b("no-log-prefix"), b("timestamps", "t"), v("tail", "n"), _DRY_RUN, HELP,
    ),
    "compose start": table(_DRY_RUN, HELP),
    "compose stop": table(v("timeout", "t"), _DRY_RUN, HELP),
    "compose restart": table(v("timeout", "t"), b("no-deps"), _DRY_RUN, HELP),
    "compose pull": table(
        b("quiet", "q"), b("include-deps"),
        b("parallel"), b("no-parallel"),   # hidden, deprecated
        b("ignore-pull-failures"), b("ignore-buildable"), v("policy"),
        _DRY_RUN, HELP,
    ),
    "compose build": table(
        deny_b("push", why="pushes service images to a registry: an image push (blocked) by another name"),
        b("quiet", "q"),
        b("pull"),
        v("build-arg"),
        deny_v("ssh", why="forwards the host's SSH agent socket or host key files into the build"),
        deny_v("builder", why="selects another builder instance: a remote/ssh BuildKit or a docker-container builder"),
        b("with-dependencies"),
        v("provenance"),
        v("sbom"),
        b("parallel"), b("compress"), b("force-rm"), b("no-rm"),  # hidden, deprecated
        b("no-cache"),
        v("memory", "m"),
        v("progress"),          # hidden
        b("print"),
        b("check"),
        _DRY_RUN, HELP,
    ),
    "compose config": table(
        v("format"),
        b("resolve-image-digests"),
        b("lock-image-digests"),
        b("quiet", "q"),
        b("no-interpolate"),
        b("no-normalize"),
        b("no-path-resolution"),
        b("no-consistency"),
        b("no-env-resolution"),
        b("services"),
        b("volumes"),
        b("networks"),
        b("models"),
        b("profiles"),
        b("images"),
        v("hash"),
        b("variables"),
        b("environment"),
        v("output", "o", check=PATH),   # compose writes the rendered model there
        _DRY_RUN, HELP,
    ),
    "compose ls": table(v("format"), b("quiet", "q"), v("filter"), b("all", "a"), _DRY_RUN, HELP),
    "compose images": table(v("format"), b("quiet", "q"), _DRY_RUN, HELP),
    "compose top": table(_DRY_RUN, HELP),
    "compose version": table(v("format", "f"), b("short"), _DRY_RUN, HELP),
    # run: vetted like docker run where the flags overlap. Compose run has no
    # --privileged, --device, --network, --pid, --mount or --security-opt.
    "compose run": table(
        b("detach", "d"),
        v("env", "e"),
        v("env-from-file", check=ENV_FILE),
        v("label", "l"),
        v("labels"),            # NormalizeFunc: --labels -> --label
        b("rm"),
        b("no-TTY", "T"),
        v("name"),
        v("user", "u"),
        v("workdir", "w"),
        v("entrypoint"),
        deny_v("cap-add", why="adds kernel capabilities (SYS_ADMIN, SYS_MODULE, ...) that break out of the container"),
        v("cap-drop"),
        b("no-deps"),
        v("volume", "v", check=VOLUME),
        v("volumes", check=VOLUME),  # NormalizeFunc: --volumes -> --volume
        v("publish", "p", check=PUBLISH),
        b("use-aliases"),
        b("service-ports", "P"),
        v("pull"),
        b("quiet", "q"),
        b("quiet-build"),
        b("quiet-pull"),
        b("build"),
        b("remove-orphans"),
        b("interactive", "i"),
        b("tty", "t"),          # hidden
        _DRY_RUN, HELP,
    ),
    "compose rm": table(
        b("force", "f"), b("stop", "s"), b("volumes", "v"),
        b("all", "a"),          # hidden, deprecated no-op
        _DRY_RUN, HELP,
    ),
    "compose kill": table(b("remove-orphans"), v("signal", "s"), _DRY_RUN, HELP),
}

# Subcommands that call flags.SetInterspersed(false): flags stop at the first
# positional (the service), what follows is the container's command.
COMPOSE_NON_INTERSPERSED: frozenset[str] = frozenset({"compose run", "compose exec"})
