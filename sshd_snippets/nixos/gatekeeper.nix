# NixOS module: confine an agent account to gatekeeper (vetted docker commands over SSH).
#
# The same settings as ../00-gatekeeper.conf, for NixOS.  Import it and set, e.g.:
#
#   imports = [ ./gatekeeper.nix ];
#   services.gatekeeper = {
#     enable = true;
#     package = pkgs.python3.withPackages (ps: [ gatekeeperPythonPackage ]);
#     authorizedKeys = [ "ssh-ed25519 AAAA... agent@laptop" ];
#     policy.limits.memory = "2g";          # or: policyFile = ./policy.toml;
#   };
#
# The ForceCommand is /etc/gatekeeper/gatekeeper-ssh-resident (resident.enable, the default:
# ../README.md, "The resident ForceCommand"): a C client handing each session to a worker of
# service gatekeeper-resident; it fails closed (service stopped: every call denied). Off, the
# fallback, it is the entry script below. `package` must be a Python environment that
# contains the gatekeeper package; its bin/python3 runs the workers and the entry script
# /etc/gatekeeper/gatekeeper-ssh
# (#!<python3> -I: nothing the agent writes into its home is imported; and with
# NIX_PYTHONPATH cleared: nixpkgs' sitecustomize reads it even under -I). The script
# calls gatekeeper.cli.entry directly: no runpy, about 3.5 ms less per call than
# `python3 -I -m gatekeeper`. Unlike install-entry's script on Debian it keeps the
# site module (the environment finds its packages through it) and reads no module
# bundle (its freshness stamps, inode and mtime, do not survive the store:
# docs/performance.md, "The NixOS module").  Keys are written to /etc/ssh/authorized_keys.d/<user>
# by NixOS (root-owned), each with restrict,command="..." as well, and
# ~/.ssh/authorized_keys is not consulted for this user.
#
# What it sets up, like sshd_snippets/install.sh on Debian: the account with its
# own group and /bin/sh semantics (dash), the policy at /etc/gatekeeper/policy.toml
# (generated from `policy` with pkgs.formats.toml, docker binary from
# `dockerPackage`, roots and workdir from the user's home; or `policyFile`, never
# both) and its compiled copy, the audit log append-only (chattr +a) with
# logrotate keeping it so, user@UID.service masked and lingering off (pam_systemd
# would start a user manager that reads ~/.config/systemd/user), and the sshd
# Match block placed after every other extraConfig line (lib.mkAfter), so that an
# operator's global lines never end up inside it.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.gatekeeper;
  home = "/home/${cfg.user}";
  python = "${cfg.package}/bin/python3";
  chattr = "${pkgs.e2fsprogs}/bin/chattr";
  logDir = "/var/log/gatekeeper";
  log = "${logDir}/audit.jsonl";
  toml = pkgs.formats.toml { };
  proxySocket = "/run/gatekeeper/docker.sock";
  # The live log: only the proxy writes it (the agent's account cannot open it), or,
  # without the proxy, the agent's gatekeeper appends.
  logOwner = if cfg.proxy.enable then "root root" else "root ${cfg.group}";
  logMode = if cfg.proxy.enable then "0600" else "0620";

  # The generated policy: only what differs from gatekeeper's embedded default
  # for this host, then the operator's `policy` on top.
  generatedPolicy = lib.recursiveUpdate (lib.recursiveUpdate {
    docker = {
      binary = "${cfg.dockerPackage}/bin/docker";
      workdir = home;
      config_dir = "/etc/gatekeeper/docker";
    };
    paths = {
      allowed_roots = [ home ];
      state_dir = "${home}/.gatekeeper";
    };
    audit.path = log;
  } (lib.optionalAttrs cfg.proxy.enable {
    # The agent reaches the engine only through `gatekeeper proxy`, which also writes the log.
    docker.host = "unix://${proxySocket}";
    audit.via_proxy = true;
    proxy = {
      listen = proxySocket;
      group = cfg.group;
      upstream = cfg.proxy.engineSocket;
      users.${cfg.user} = "default";
    };
  })) cfg.policy;
  policySource =
    if cfg.policyFile != null then cfg.policyFile else toml.generate "gatekeeper-policy.toml" generatedPolicy;

  # The ForceCommand's entry script (as `gatekeeper install-entry` writes one, less -S and the bundle).
  entryScript = pkgs.writeScript "gatekeeper-ssh" ''
    #!${python} -I
    # Written by the NixOS module services.gatekeeper: the sshd ForceCommand, without runpy.
    # -I: no PYTHON* variables, no user site, nothing from the cwd or this file's directory on sys.path.
    from gatekeeper.cli import entry

    entry()
  '';
  # The resident ForceCommand's client (resident.enable), as `install-entry --resident` compiles it.
  residentClient = pkgs.runCommandCC "gatekeeper-ssh-resident" { } ''
    $CC -O2 -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
      -DGK_SOCKET_DIR='"/run/gatekeeper-resident"' -o $out ${../../gatekeeper/resident_client.c}
  '';
  entryCommand = "/etc/gatekeeper/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml";
  forcedCommand = if cfg.resident.enable
    then "/etc/gatekeeper/gatekeeper-ssh-resident --policy /etc/gatekeeper/policy.toml"
    else entryCommand;
  # command= in the key line names the entry script (ForceCommand wins over it), as on Debian.
  keyLine = key: ''restrict,command="${entryCommand}" ${key}'';
in
{
  options.services.gatekeeper = {
    enable = lib.mkEnableOption "gatekeeper ForceCommand for an agent account";

    user = lib.mkOption {
      type = lib.types.str;
      default = "ai-worker";
      description = "Account the agent logs in as; its home is /home/<user>.";
    };

    group = lib.mkOption {
      type = lib.types.str;
      default = "ai-worker";
      description = "The account's own primary group (the audit log's group).";
    };

    uid = lib.mkOption {
      type = lib.types.int;
      default = 2001;
      description = "Fixed uid: user@<uid>.service is masked by it.";
    };

    package = lib.mkOption {
      type = lib.types.package;
      description = "Python environment containing the gatekeeper package.";
    };

    dockerPackage = lib.mkOption {
      type = lib.types.package;
      default = pkgs.docker;
      description = "Docker client whose bin/docker the generated policy pins.";
    };

    policy = lib.mkOption {
      type = toml.type;
      default = { };
      description = "Policy settings over the generated ones (TOML keys, e.g. limits.memory).";
    };

    policyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = "A complete policy file instead of `policy` (not both).";
    };

    proxy.enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Run `gatekeeper proxy` (systemd service gatekeeper-proxy) as the agent's only way to
        the engine: the account is in no group that owns the engine's socket, and the proxy
        vets every API request against the same policy and writes the audit log. Off: the
        account is in group docker (root-equivalent) and the CLI layer alone confines it.
      '';
    };

    resident.enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        The ForceCommand is /etc/gatekeeper/gatekeeper-ssh-resident, a C client built from
        gatekeeper/resident_client.c that hands each session to a worker of systemd service
        gatekeeper-resident (`gatekeeper resident`, the same checks as the agent, no Python
        start per call). It fails closed: with the service stopped every call is denied.
        Off: the fallback, the entry script /etc/gatekeeper/gatekeeper-ssh.
      '';
    };

    proxy.engineSocket = lib.mkOption {
      type = lib.types.str;
      default = "/run/docker.sock";
      description = "The engine's socket the proxy forwards to ([proxy] upstream).";
    };

    authorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Bare public keys (TYPE BASE64 [COMMENT]) of the agent; options are added here.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.policy == { } || cfg.policyFile == null;
        message = "services.gatekeeper: set `policy` or `policyFile`, not both (one source of truth).";
      }
    ];

    # /bin/sh semantics: sshd runs the forced command through the login shell,
    # and a shell that reads rc files would run what the agent wrote there.
    users.groups.${cfg.group} = { };
    users.groups.docker = { };
    users.users.${cfg.user} = {
      isNormalUser = true;
      uid = cfg.uid;
      group = cfg.group;
      home = home;
      shell = "${pkgs.dash}/bin/dash";
      # With the proxy, no group that owns the engine's socket (it is root).
      extraGroups = if cfg.proxy.enable then [ ] else [ "docker" ];
      linger = false;
      openssh.authorizedKeys.keys = map keyLine cfg.authorizedKeys;
    };

    # The agent's home (its allowed root) as its own mount with nosuid,nodev: root in the
    # agent's containers can leave set-user-ID programs or device nodes in a bind source,
    # inert on this mount; gatekeeper refuses bind sources on any other (install step area-mount).
    fileSystems.${home} = {
      device = home;
      fsType = "none";
      options = [ "bind" "nosuid" "nodev" ];
    };

    # pam_systemd would start user@UID.service at every login; it reads
    # ~/.config/systemd/user and ~/.config/environment.d. enable = false makes
    # the unit a link to /dev/null (masked).
    systemd.services."user@${toString cfg.uid}".enable = false;

    environment.etc."gatekeeper/policy.toml" = {
      source = policySource;
      mode = "0644";
    };
    environment.etc."gatekeeper/docker/.keep".text = "";
    environment.etc."gatekeeper/gatekeeper-ssh".source = entryScript;
    environment.etc."gatekeeper/gatekeeper-ssh-resident" = lib.mkIf cfg.resident.enable { source = residentClient; };

    # The fast path: parsed policy next to the file (gatekeeper policy compile).
    system.activationScripts.gatekeeperPolicy = {
      deps = [ "etc" ];
      text = "${python} -I -m gatekeeper policy compile /etc/gatekeeper/policy.toml";
    };

    # Audit log: nobody may truncate or replace it; the proxy (or, without it, the
    # agent's gatekeeper) appends.
    systemd.tmpfiles.rules = [
      "d ${logDir} 0755 root root -"
      "f ${log} ${logMode} ${logOwner} -"
      "h ${log} - - - - +a"
    ];

    services.logrotate.enable = true;
    services.logrotate.settings.gatekeeper = {
      files = log;
      frequency = "weekly";
      rotate = 52;
      compress = true;
      delaycompress = true;
      missingok = true;
      notifempty = true;
      nocreate = true;
      nocopytruncate = true;
      sharedscripts = true;
      firstaction = ''
        set -e
        chmod 0700 ${logDir}
        ${chattr} -a ${log}
        if [ -e ${log}.1 ]; then ${chattr} -a ${log}.1; fi
      '';
      postrotate = ''
        set -e
        (umask 077 && : >> ${log})
        chown --reference=${log}.1 ${log}
        chmod --reference=${log}.1 ${log}
        ${chattr} +a ${log}
        chown root:root ${log}.1
        chmod 0600 ${log}.1
        ${chattr} +a ${log}.1
        chmod 0755 ${logDir}
      '';
    };

    # The same unit as ../gatekeeper-proxy.service (tests/e2e/test_nixos_module.py compares them).
    systemd.services.gatekeeper-proxy = lib.mkIf cfg.proxy.enable {
      description = "gatekeeper docker API proxy (the agent's only way to the engine)";
      wantedBy = [ "multi-user.target" ];
      after = [ "docker.service" "docker.socket" ];
      wants = [ "docker.service" ];
      serviceConfig = {
        Type = "simple";
        ExecStart = "${python} -I -m gatekeeper proxy --policy /etc/gatekeeper/policy.toml";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = "1s";
        RuntimeDirectory = "gatekeeper";
        RuntimeDirectoryMode = "0755";
        UMask = "0077";
        User = "root";
        CapabilityBoundingSet = "CAP_CHOWN CAP_DAC_READ_SEARCH";
        AmbientCapabilities = "";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = logDir;
        ProtectHome = "read-only";
        # No PrivateTmp: bind sources are resolved in the host's /tmp, as the engine mounts them.
        CacheDirectory = "gatekeeper-proxy";
        CacheDirectoryMode = "0700";
        Environment = "TMPDIR=/var/cache/gatekeeper-proxy";
        PrivateDevices = true;
        DevicePolicy = "closed";
        PrivateNetwork = true;
        RestrictAddressFamilies = "AF_UNIX";
        IPAddressDeny = "any";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = "@system-service";
        SystemCallErrorNumber = "EPERM";
      };
    };

    # The same unit as ../gatekeeper-resident.service (tests/e2e/test_nixos_module.py compares them).
    systemd.services.gatekeeper-resident = lib.mkIf cfg.resident.enable {
      description = "gatekeeper resident ForceCommand workers for ${cfg.user}";
      wantedBy = [ "multi-user.target" ];
      after = [ "gatekeeper-proxy.service" ];
      serviceConfig = {
        Type = "simple";
        ExecStart = "${python} -I -m gatekeeper resident --user ${cfg.user} --workers 3";
        Restart = "on-failure";
        RestartSec = "1s";
        RuntimeDirectory = "gatekeeper-resident";
        RuntimeDirectoryMode = "0755";
        CapabilityBoundingSet = "CAP_SETUID CAP_SETGID CAP_CHOWN";
        NoNewPrivileges = true;
        TasksMax = 4096;
      };
    };

    services.openssh = {
      enable = true;
      settings.PermitUserEnvironment = false;
      # Last of all extraConfig lines: a Match block runs to the end of the
      # file, so anything merged after it would apply to the agent only.
      extraConfig = lib.mkAfter ''
        Match User ${cfg.user}
          ForceCommand exec ${forcedCommand}
          AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u
          AuthorizedKeysCommand none
          TrustedUserCAKeys none
          AuthorizedPrincipalsFile none
          AuthorizedPrincipalsCommand none
          AuthenticationMethods publickey
          PubkeyAuthentication yes
          PasswordAuthentication no
          KbdInteractiveAuthentication no
          HostbasedAuthentication no
          DisableForwarding yes
          AllowTcpForwarding no
          AllowStreamLocalForwarding no
          AllowAgentForwarding no
          X11Forwarding no
          PermitTunnel no
          GatewayPorts no
          PermitOpen none
          PermitListen none
          PermitTTY no
          PermitUserRC no
          ExposeAuthInfo yes
          AcceptEnv GATEKEEPER_NO_CLIENT_ENV
          SetEnv LANG=C.UTF-8 LC_ALL=C.UTF-8 GATEKEEPER_NO_CLIENT_ENV=none NIX_PYTHONPATH=
          MaxSessions 4
          ClientAliveInterval 30
          ClientAliveCountMax 3
          ChannelTimeout session=30m
          UnusedConnectionTimeout 5m
      '';
    };
  };
}
