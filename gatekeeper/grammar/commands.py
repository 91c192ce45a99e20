"""Docker's command tree, as data.

Mirrors docker/cli v28.2.2 (cli/command/commands/commands.go and the
per-command cobra definitions: Use, Aliases), plus the two CLI plugins the
gatekeeper knows about (compose v2.40, buildx). Every spelling that reaches a
command maps to one *canonical path*, the management form ("container ls"),
and every decision is made on that path.

Anything not in these tables is unknown and therefore denied: docker would
hand an unknown top-level name to a CLI plugin binary, which is arbitrary code.
"""

from __future__ import annotations

# Top-level commands. Legacy shortcuts point at their management form.
TOP_LEVEL: dict[str, str] = {
    # container shortcuts
    "attach": "container attach",
    "commit": "container commit",
    "cp": "container cp",
    "create": "container create",
    "diff": "container diff",
    "exec": "container exec",
    "export": "container export",
    "kill": "container kill",
    "logs": "container logs",
    "pause": "container pause",
    "port": "container port",
    "ps": "container ls",
    "rename": "container rename",
    "restart": "container restart",
    # NewRmCommand's alias survives hide(): `docker remove` works. Listed
    # before "rm" so DISPLAY keeps the usual spelling.
    "remove": "container rm",
    "rm": "container rm",
    "run": "container run",
    "start": "container start",
    "stats": "container stats",
    "stop": "container stop",
    "top": "container top",
    "unpause": "container unpause",
    "update": "container update",
    "wait": "container wait",
    # image shortcuts
    "build": "image build",
    "history": "image history",
    "images": "image ls",
    "import": "image import",
    "load": "image load",
    "pull": "image pull",
    "push": "image push",
    "rmi": "image rm",
    "save": "image save",
    "tag": "image tag",
    # system shortcuts
    "events": "system events",
    "info": "system info",
    # others
    "inspect": "inspect",
    "login": "login",
    "logout": "logout",
    "search": "search",
    "version": "version",
}

# Management commands: name -> {subcommand or alias -> canonical path}.
MANAGEMENT: dict[str, dict[str, str]] = {
    "container": {
        "attach": "container attach",
        "commit": "container commit",
        "cp": "container cp",
        "create": "container create",
        "diff": "container diff",
        "exec": "container exec",
        "export": "container export",
        "inspect": "container inspect",
        "kill": "container kill",
        "logs": "container logs",
        "ls": "container ls",
        "list": "container ls",
        "ps": "container ls",
        "pause": "container pause",
        "port": "container port",
        "prune": "container prune",
        "rename": "container rename",
        "restart": "container restart",
        "rm": "container rm",
        "remove": "container rm",
        "run": "container run",
        "start": "container start",
        "stats": "container stats",
        "stop": "container stop",
        "top": "container top",
        "unpause": "container unpause",
        "update": "container update",
        "wait": "container wait",
    },
    "image": {
        "build": "image build",
        "history": "image history",
        "import": "image import",
        "inspect": "image inspect",
        "load": "image load",
        "ls": "image ls",
        "list": "image ls",
        "prune": "image prune",
        "pull": "image pull",
        "push": "image push",
        "rm": "image rm",
        "remove": "image rm",
        "rmi": "image rm",
        "save": "image save",
        "tag": "image tag",
    },
    "system": {
        "df": "system df",
        "events": "system events",
        "info": "system info",
        "prune": "system prune",
        "dial-stdio": "system dial-stdio",
    },
    "network": {
        "connect": "network connect",
        "create": "network create",
        "disconnect": "network disconnect",
        "inspect": "network inspect",
        "ls": "network ls",
        "list": "network ls",
        "prune": "network prune",
        "rm": "network rm",
        "remove": "network rm",
    },
    "volume": {
        "create": "volume create",
        "inspect": "volume inspect",
        "ls": "volume ls",
        "list": "volume ls",
        "prune": "volume prune",
        "rm": "volume rm",
        "remove": "volume rm",
        "update": "volume update",
    },
    # With buildx installed, docker forwards "builder" to the buildx plugin;
    # only its build is ever allowed.
    "builder": {
        "build": "image build",
        "b": "image build",  # forwarded as `docker buildx b` when buildx is installed
        "prune": "builder prune",
    },
    "buildx": {
        "build": "image build",
        "b": "image build",
    },
    "compose": {},  # subcommands come from grammar.compose
    "checkpoint": {},
    "config": {},
    "context": {},
    "manifest": {},
    "node": {},
    "plugin": {},
    "secret": {},
    "service": {},
    "stack": {},
    "swarm": {},
    "trust": {},
}

# Management commands that are CLI plugins (separate binaries with their own
# global flags before the subcommand).
PLUGINS = frozenset({"compose", "buildx"})

# Every compose v2.40.3 subcommand (cmd/compose/*.go; compose has no aliases),
# so blocked ones are recognised and refused by name.
COMPOSE_COMMANDS: dict[str, str] = {
    name: "compose " + name
    for name in (
        "alpha",    # hidden: viz, publish, generate
        "attach", "bridge", "build", "commit", "config", "cp", "create",
        "down", "events", "exec", "export", "images", "kill", "logs", "ls",
        "pause", "port", "ps", "publish", "pull", "push", "restart", "rm",
        "run", "scale", "start", "stats", "stop", "top", "unpause", "up",
        "version", "volumes", "wait", "watch",
    )
}

# Short display names for messages: the spelling an agent most likely uses.
DISPLAY: dict[str, str] = {canonical: name for name, canonical in TOP_LEVEL.items()}
