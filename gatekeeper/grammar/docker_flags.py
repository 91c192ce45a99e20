"""Flag grammar of the docker CLI commands the gatekeeper may allow, as data.

Mirrors docker/cli tag v28.2.2 (the client at /usr/local/bin/docker,
"Docker version 28.2.2, build e6534b4"). Source files read:

* cli/flags/options.go, cmd/docker/docker.go, cli/cobra.go   root options
* cli/command/container/opts.go (addFlags), run.go, create.go
* cli/command/container/{list,inspect,logs,start,stop,restart,rm,kill,
  prune,top,port,stats,wait}.go
* cli/command/image/{list,inspect,remove,pull,history,prune}.go
* cli/command/system/{inspect,df,info,events,prune,version}.go
* cli/command/network/{list,inspect,prune}.go
* cli/command/volume/{list,inspect,prune}.go
* cli/command/builder/prune.go, cli/command/trust.go, cli/command/utils.go
* buildx v0.29.1 commands/prune.go and commands/root.go for "builder prune"
  (docker forwards ``docker builder ...`` to buildx when it is installed)

Hidden and deprecated flags are listed too, since pflag still parses them:
``--net``, ``--net-alias``, ``--dns-opt`` (run/create), ``--time``
(stop/restart), ``--keep-storage`` (buildx prune). Flags that the CLI hides
for lack of daemon support (``ostype``/``experimental``/``version``
annotations: ``--cpu-count``, ``--checkpoint``, ...) are parsed as well; the
CLI refuses them only after parsing.

pflag facts the parser must honour (none of them is visible in the tables):

* every command inherits the root's hidden persistent ``-h/--help``, except
  run and create, which define their own ``--help`` without a shorthand
  because ``-h`` is ``--hostname`` there;
* no flag of these commands has an optional value (NoOptDefVal) other than
  the pflag bools; a bool takes a value only as ``--flag=value``/``-f=value``;
* root options are parsed only before the command name (TraverseChildren,
  non-interspersed), and NON_INTERSPERSED commands stop at their first
  positional argument (for run/create: the image; the rest is the command).

Each check name is one of spec.CHECKS; every DENY carries the attack it stops.
"""

# One flag per line keeps each refusal's "why" beside its flag; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

from gatekeeper.grammar.build_flags import BUILD, BUILDX_ROOT_FLAGS
from gatekeeper.grammar.spec import (
    ADDRESS,
    DENY_TRUE,
    ENV_FILE,
    HELP,
    MOUNT,
    NAMESPACE,
    NETWORK,
    NOT_NEGATIVE,
    PATH,
    PUBLISH,
    PUBLISH_ALL,
    SECURITY_OPT,
    SUBNET,
    SYSCTL,
    ULIMIT,
    VOLUME,
    Flag,
    b,
    deny_b,
    deny_v,
    table,
    v,
)

# fmt: off

# Root ("global") options, cli/flags/options.go InstallFlags plus
# cmd/docker/docker.go (-v/--version) and cli/cobra.go (hidden -h/--help).
GLOBAL: dict[str, Flag] = table(
    deny_v("config", why="names another client config dir: plugin dirs, credential helpers, proxies and contexts run or reach anything"),
    deny_v("context", "c", why="switches the daemon endpoint to another (possibly remote or ssh) context"),
    b("debug", "D"),
    deny_v("host", "H", why="points the client at another daemon socket or ssh:// host; the policy fixes DOCKER_HOST"),
    v("log-level", "l"),
    deny_b("tls", why="TLS settings only matter for a TCP daemon we never allow; also reads host key files"),
    deny_v("tlscacert", why="makes the client read a host file as a CA certificate (TCP daemons only, never allowed)"),
    deny_v("tlscert", why="makes the client read a host file as a client certificate (TCP daemons only, never allowed)"),
    deny_v("tlskey", why="makes the client read a host file as a private key (TCP daemons only, never allowed)"),
    deny_b("tlsverify", why="TLS settings only matter for a TCP daemon we never allow; also reads host key files"),
    b("version", "v"),
    HELP,
)

# --- container run / create ------------------------------------------------

# The API layer refuses the same (DELETE /containers/{id}?link=1, gatekeeper.proxy.vet).
RM_LINK_WHY = ("its word names a legacy link (/CONTAINER/ALIAS) the engine finds by name, not a container "
               "gatekeeper can resolve and check; remove the container itself (docker rm NAME), or connect "
               "containers on a network of yours instead of --link")
_CONFIG_FROM_WHY = "copies another network's configuration (subnets, driver options) unvetted"
_DEVICE_PATH_WHY = "names a host block device: the daemon stats host /dev paths and throttles host disks"
# The OOM killer: the engine (root) grants what no container process could (CAP_SYS_RESOURCE);
# compose (vetting.compose_project) and the proxy (proxy.containers) refuse with the same words.
OOM_WHY = ("makes the container the last one the kernel's OOM killer picks: under memory pressure sshd, "
           "dockerd and the operator's services are killed first")

# cli/command/container/opts.go addFlags (shared by run and create).
_CONTAINER_OPTS: tuple[Flag, ...] = (
    # general
    v("attach", "a"),
    deny_v("device-cgroup-rule", why="lets the container open host devices (e.g. 'b *:* rwm' with mknod reaches host disks)"),
    deny_v("device", why="passes a host device node into the container (raw disks, /dev/mem, ...)"),
    deny_v("gpus", why="passes host GPU device nodes and driver libraries into the container"),
    v("env", "e"),
    v("env-file", check=ENV_FILE),
    v("entrypoint"),
    v("group-add"),
    v("hostname", "h"),
    v("domainname"),
    b("interactive", "i"),
    v("label", "l"),
    v("label-file", check=PATH),
    b("read-only"),
    v("restart"),
    v("stop-signal"),
    v("stop-timeout"),
    v("sysctl", check=SYSCTL),
    b("tty", "t"),
    v("ulimit", check=ULIMIT),
    v("user", "u"),
    v("workdir", "w"),
    b("rm"),
    # security
    deny_v("cap-add", why="adds kernel capabilities (SYS_ADMIN, SYS_MODULE, ...) that break out of the container"),
    v("cap-drop"),
    b("privileged", check=DENY_TRUE, why="a privileged container has every capability and all host devices: host root"),
    v("security-opt", check=SECURITY_OPT),
    v("userns", check=NAMESPACE),
    v("cgroupns", check=NAMESPACE),
    # network and ports
    v("add-host"),
    v("dns"),
    v("dns-opt"),            # hidden alias of --dns-option
    v("dns-option"),
    v("dns-search"),
    v("expose"),
    v("ip", check=ADDRESS),
    v("ip6", check=ADDRESS),
    v("link"),               # legacy links: env and /etc/hosts of a container we may already reach
    deny_v("link-local-ip", why="link-local addresses are the engine's to assign (169.254/16 holds the metadata address)"),
    deny_v("mac-address", why="a chosen MAC can clone a neighbour's and take its frames on the bridge (the engine picks one)"),
    v("publish", "p", check=PUBLISH),
    b("publish-all", "P", check=PUBLISH_ALL),
    v("net", check=NETWORK),  # hidden alias of --network
    v("network", check=NETWORK),
    v("net-alias"),          # hidden alias of --network-alias
    v("network-alias"),
    # logging and storage
    deny_v("log-driver", why="other log drivers make dockerd read host files (syslog-tls-*, splunk-cacert) or dial host sockets"),
    v("log-opt"),
    deny_v("volume-driver", why="a volume plugin can map any host path into the container: a bind mount in disguise"),
    v("storage-opt"),
    v("tmpfs"),
    deny_v("volumes-from", why="inherits another container's mounts, including its host bind mounts"),
    v("volume", "v", check=VOLUME),
    v("mount", check=MOUNT),
    # health
    v("health-cmd"),
    v("health-interval"),
    v("health-retries"),
    v("health-timeout"),
    v("health-start-period"),
    v("health-start-interval"),
    b("no-healthcheck"),
    # resources
    v("blkio-weight"),
    deny_v("blkio-weight-device", why=_DEVICE_PATH_WHY),
    v("cidfile", check=PATH),
    v("cpuset-cpus"),
    v("cpuset-mems"),
    v("cpu-count"),          # Windows only
    v("cpu-percent"),        # Windows only
    v("cpu-period"),
    v("cpu-quota"),
    v("cpu-rt-period"),
    v("cpu-rt-runtime"),
    v("cpu-shares", "c"),
    v("cpus"),
    deny_v("device-read-bps", why=_DEVICE_PATH_WHY),
    deny_v("device-read-iops", why=_DEVICE_PATH_WHY),
    deny_v("device-write-bps", why=_DEVICE_PATH_WHY),
    deny_v("device-write-iops", why=_DEVICE_PATH_WHY),
    v("io-maxbandwidth"),    # Windows only
    v("io-maxiops"),         # Windows only
    v("kernel-memory"),
    v("memory", "m"),
    v("memory-reservation"),
    v("memory-swap"),
    v("memory-swappiness"),
    b("oom-kill-disable", check=DENY_TRUE, why=OOM_WHY),
    v("oom-score-adj", check=NOT_NEGATIVE, why=OOM_WHY),
    v("pids-limit"),
    # low-level execution
    deny_v("cgroup-parent", why="places the container in an arbitrary host cgroup, escaping the limits docker sets"),
    v("ipc", check=NAMESPACE),
    v("isolation"),
    v("pid", check=NAMESPACE),
    v("shm-size"),
    v("uts", check=NAMESPACE),
    deny_v("runtime", why="selects another OCI runtime the daemon knows, possibly one without confinement"),
    b("init"),
    deny_v("annotation", why="OCI annotations reach the runtime; some (e.g. CDI, nvidia) turn into host devices"),
)

# run.go/create.go own flags, AddPlatformFlag, AddTrustVerificationFlags and
# the explicit --help without -h.
_CREATE_OWN: tuple[Flag, ...] = (
    v("name"),
    v("pull"),
    b("quiet", "q"),
    deny_b("use-api-socket", why="bind-mounts the Docker API socket (root on the host) and registry credentials"),
    v("platform"),
    b("disable-content-trust"),
    b("help"),
)

_RUN_OWN: tuple[Flag, ...] = (
    b("detach", "d"),
    b("sig-proxy"),
    v("detach-keys"),
)

_CREATE: dict[str, Flag] = table(*_CONTAINER_OPTS, *_CREATE_OWN)
_RUN: dict[str, Flag] = table(*_CONTAINER_OPTS, *_CREATE_OWN, *_RUN_OWN)

# --- other container commands -------------------------------------------------

_PS: dict[str, Flag] = table(
    b("quiet", "q"), b("size", "s"), b("all", "a"), b("no-trunc"),
    b("latest", "l"), v("last", "n"), v("format"), v("filter", "f"), HELP,
)

_STOP: dict[str, Flag] = table(
    v("signal", "s"), v("timeout", "t"),
    v("time"),  # deprecated alias of --timeout
    HELP,
)

FLAGS: dict[str, dict[str, Flag]] = {
    "container run": _RUN,
    "container create": _CREATE,
    "container ls": _PS,
    "container inspect": table(v("format", "f"), b("size", "s"), HELP),
    "container logs": table(
        b("follow", "f"), v("since"), v("until"), b("timestamps", "t"),
        b("details"), v("tail", "n"), HELP,
    ),
    "container start": table(
        deny_b("attach", "a", why="attaches to the container's stdio: an exec into a running shell by another name"),
        deny_b("interactive", "i", why="attaches the caller's stdin to the container: an attach by another name"),
        v("detach-keys"),
        deny_v("checkpoint", why="restores process state from a checkpoint (CRIU), bypassing the vetted create"),
        deny_v("checkpoint-dir", why="makes the daemon read checkpoint images from an arbitrary host directory"),
        HELP,
    ),
    "container stop": _STOP,
    "container restart": _STOP,
    "container rm": table(b("volumes", "v"), b("link", "l", check=DENY_TRUE, why=RM_LINK_WHY), b("force", "f"), HELP),
    "container kill": table(v("signal", "s"), HELP),
    "container prune": table(b("force", "f"), v("filter"), HELP),
    "container top": table(HELP),
    "container port": table(HELP),
    "container stats": table(b("all", "a"), b("no-stream"), b("no-trunc"), v("format"), HELP),
    "container wait": table(HELP),
    # --- images ---
    "image ls": table(
        b("quiet", "q"), b("all", "a"), b("no-trunc"), b("digests"),
        v("format"), v("filter", "f"), b("tree"), HELP,
    ),
    "image inspect": table(v("format", "f"), v("platform"), HELP),
    "image rm": table(b("force", "f"), b("no-prune"), v("platform"), HELP),
    "image pull": table(
        b("all-tags", "a"), b("quiet", "q"), v("platform"),
        b("disable-content-trust"), HELP,
    ),
    "image history": table(
        b("human", "H"), b("quiet", "q"), b("no-trunc"), v("format"),
        v("platform"), HELP,
    ),
    "image prune": table(b("force", "f"), b("all", "a"), v("filter"), HELP),
    "image build": BUILD,
    # --- system and others ---
    "inspect": table(v("format", "f"), v("type"), b("size", "s"), HELP),
    "system df": table(b("verbose", "v"), v("format"), HELP),
    "system info": table(v("format", "f"), HELP),
    "system events": table(v("since"), v("until"), v("filter", "f"), v("format"), HELP),
    "system prune": table(b("force", "f"), b("all", "a"), b("volumes"), v("filter"), HELP),
    "network ls": table(b("quiet", "q"), b("no-trunc"), v("format"), v("filter", "f"), HELP),
    "network inspect": table(v("format", "f"), b("verbose", "v"), HELP),
    "network prune": table(b("force", "f"), v("filter"), HELP),
    # cli/command/network/create.go; drivers checked by gatekeeper.vetting.addresses
    "network create": table(
        b("attachable"), v("aux-address", check=ADDRESS), deny_v("config-from", why=_CONFIG_FROM_WHY),
        b("config-only"), v("driver", "d"), v("gateway", check=ADDRESS),
        deny_b("ingress", why="a swarm routing-mesh network publishes ports on every node"),
        b("internal"), v("ip-range", check=ADDRESS), v("ipam-driver"),
        deny_v("ipam-opt", why="IPAM driver options are not vetted"),
        b("ipv4"), b("ipv6"), v("label"),
        deny_v("opt", "o", why="driver options can attach a network to existing host bridges and interfaces"),
        v("scope"), v("subnet", check=SUBNET), HELP,
    ),
    "volume ls": table(b("quiet", "q"), v("format"), v("filter", "f"), b("cluster"), HELP),
    "volume inspect": table(v("format", "f"), HELP),
    "volume prune": table(b("all", "a"), b("force", "f"), v("filter"), HELP),
    "version": table(v("format", "f"), HELP),
    # Union of docker/cli builder/prune.go (legacy) and buildx prune.go (what
    # runs when buildx is installed), plus buildx's persistent root flags.
    "builder prune": table(
        b("force", "f"), b("all", "a"), v("filter"), v("keep-storage"),
        v("reserved-space"), v("min-free-space"), v("max-used-space"),
        b("verbose"), *BUILDX_ROOT_FLAGS, HELP,
    ),
}

# Commands whose cobra definition calls flags.SetInterspersed(false): flag
# parsing stops at the first positional argument (run/create: the image;
# top: the container, after which come ps(1) options).
NON_INTERSPERSED: frozenset[str] = frozenset({
    "container run", "container create", "container top",
    # not allowed by policy, listed for completeness of the grammar:
    "container exec", "container commit", "image tag",
})
