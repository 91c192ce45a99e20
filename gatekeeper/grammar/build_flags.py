"""Flag grammar of ``docker build`` (and image/builder/buildx build), as data.

Which builder runs depends on the host: with the buildx plugin installed,
docker/cli forwards ``build``, ``image build``, ``builder build`` to
``buildx build`` (cmd/docker/builder.go); without it the legacy builder in
docker/cli runs. So BUILD is the UNION of both grammars, and a flag is vetted
the same whichever builder ends up parsing it.

Mirrors:
* docker/cli tag v28.2.2: cli/command/image/build.go (NewBuildCommand),
  cli/command/trust.go (--disable-content-trust);
* docker/buildx tag v0.29.1: commands/build.go (buildCmd, commonBuildFlags),
  commands/root.go (rootFlags: persistent --builder, -D/--debug). The build
  flag set is identical from v0.24.0 to v0.29.1; v0.20-v0.23 also had the
  experimental --root, --detach, --server-config (only with
  BUILDX_EXPERIMENTAL, which the child never gets), listed here as DENY.

Grammar subtleties for the parser and the vetting layer:
* ``--check`` (buildx) is a Var with NoOptDefVal "true": it never consumes
  the next word; ``--check=false`` is accepted. It is therefore a bool here.
* legacy ``--cache-from`` and ``--security-opt`` are StringSlice (the value
  is split on commas, CSV-quoted); buildx ``--cache-from``/``--cache-to`` are
  StringArray (one entry per flag, the whole CSV is one cache spec); buildx
  ``--add-host`` and ``--security-opt`` are StringSlice.
* hidden buildx flags accepted for compatibility: --print, --compress,
  --isolation, --security-opt, --squash, -m/--memory, --memory-swap,
  -c/--cpu-shares, --cpu-period, --cpu-quota, --cpuset-cpus, --cpuset-mems,
  --rm, --force-rm.
* ``-h`` is the root's hidden persistent help shorthand (no conflict here).
"""

# One flag per line keeps each refusal's "why" beside its flag; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

from gatekeeper.grammar.spec import (
    BUILD_CACHE,
    BUILD_CONTEXT,
    BUILD_NETWORK,
    BUILD_OUTPUT,
    BUILD_SECRET,
    HELP,
    PATH,
    PATH_OR_STDIN,
    Flag,
    b,
    deny_b,
    deny_v,
    table,
    v,
)

# fmt: off

# buildx commands/root.go rootFlags: persistent, so accepted both before the
# subcommand (docker buildx --builder x build) and after it.
BUILDX_ROOT_FLAGS: tuple[Flag, ...] = (
    deny_v("builder", why="selects another builder instance: a remote/ssh BuildKit or a docker-container builder with its own privileges"),
    b("debug", "D"),
)

BUILDX_GLOBAL: dict[str, Flag] = table(*BUILDX_ROOT_FLAGS, HELP)

BUILD: dict[str, Flag] = table(
    # --- in both builders ---
    v("add-host"),
    v("build-arg"),
    v("cache-from", check=BUILD_CACHE),
    deny_v("cgroup-parent", why="runs RUN steps in an arbitrary host cgroup, escaping the limits docker sets"),
    b("compress"),
    v("cpu-period"),
    v("cpu-quota"),
    v("cpu-shares", "c"),
    v("cpuset-cpus"),
    v("cpuset-mems"),
    v("file", "f", check=PATH_OR_STDIN),  # -f - : the Dockerfile on stdin
    b("force-rm"),
    v("iidfile", check=PATH),
    v("isolation"),
    v("label"),
    v("memory", "m"),
    v("memory-swap"),
    v("network", check=BUILD_NETWORK),
    b("no-cache"),
    v("platform"),
    b("pull"),
    b("quiet", "q"),
    b("rm"),
    deny_v("security-opt", why="legacy builder: seccomp/apparmor=unconfined RUN steps; buildx: deprecated no-op, refused for both"),
    v("shm-size"),
    b("squash"),
    v("tag", "t"),
    v("target"),
    v("ulimit"),
    # --- legacy builder only ---
    b("disable-content-trust"),
    # --- buildx only ---
    deny_v("allow", why="grants entitlements: security.insecure (privileged RUN), network.host, device, fs read of host paths"),
    v("annotation"),         # image/manifest annotations, not OCI runtime ones
    v("attest"),
    v("build-context", check=BUILD_CONTEXT),
    v("cache-to", check=BUILD_CACHE),
    v("call"),
    b("check"),              # NoOptDefVal "true": shorthand for --call=check
    b("load"),
    v("metadata-file", check=PATH),
    v("no-cache-filter"),
    v("output", "o", check=BUILD_OUTPUT),
    v("print"),              # hidden, experimental alias of --call
    v("progress"),
    v("provenance"),
    deny_b("push", why="pushes the image to a registry: an image push (blocked) by another name"),
    v("sbom"),
    v("secret", check=BUILD_SECRET),
    deny_v("ssh", why="forwards the host's SSH agent socket or host key files into the build"),
    # buildx <= v0.23 with BUILDX_EXPERIMENTAL (remote build controller)
    deny_v("root", why="points buildx at a build server state directory on the host"),
    deny_b("detach", why="leaves a buildx server process running on the host after the call"),
    deny_v("server-config", why="makes buildx read a server config file from an arbitrary host path"),
    # persistent root flags of buildx, and docker's hidden -h/--help
    *BUILDX_ROOT_FLAGS,
    HELP,
)
