# NixOS module: confine an agent account to gatekeeper (vetted docker commands over SSH).
#
# The same settings as ../gatekeeper.conf, for NixOS.  Import it and set, e.g.:
#
#   imports = [ ./gatekeeper.nix ];
#   services.gatekeeper = {
#     enable = true;
#     package = pkgs.python3.withPackages (ps: [ gatekeeperPythonPackage ]);
#     authorizedKeys = [ "ssh-ed25519 AAAA... agent@laptop" ];
#   };
#
# `package` must be a Python environment that contains the gatekeeper package;
# its bin/python3 is what sshd runs (with -I, so nothing the agent writes into
# its home is imported).  Keys are written to /etc/ssh/authorized_keys.d/<user>
# by NixOS (root-owned), each with restrict,command="..." as well, and
# ~/.ssh/authorized_keys is not consulted for this user.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.gatekeeper;
  python = "${cfg.package}/bin/python3";
  forcedCommand =
    "${python} -I -m gatekeeper --policy ${cfg.policyFile}";
  keyLine = key:
    ''restrict,command="${forcedCommand}" ${key}'';
in
{
  options.services.gatekeeper = {
    enable = lib.mkEnableOption "gatekeeper ForceCommand for an agent account";

    user = lib.mkOption {
      type = lib.types.str;
      default = "ai-worker";
      description = "Account the agent logs in as.";
    };

    package = lib.mkOption {
      type = lib.types.package;
      description = "Python environment containing the gatekeeper package.";
    };

    policyFile = lib.mkOption {
      type = lib.types.path;
      default = "/etc/gatekeeper/policy.toml";
      description = "Policy file passed to gatekeeper --policy (root-owned).";
    };

    policy = lib.mkOption {
      type = lib.types.lines;
      default = "";
      description = "Contents of /etc/gatekeeper/policy.toml; empty means the built-in default.";
    };

    authorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Bare public keys (TYPE BASE64 [COMMENT]) of the agent; options are added here.";
    };
  };

  config = lib.mkIf cfg.enable {
    # /bin/sh semantics: sshd runs the forced command through the login shell,
    # and a shell that reads rc files would run what the agent wrote there.
    users.groups.docker = { };
    users.users.${cfg.user} = {
      isNormalUser = true;
      home = "/home/${cfg.user}";
      shell = "${pkgs.dash}/bin/dash";
      extraGroups = [ "docker" ];
      openssh.authorizedKeys.keys = map keyLine cfg.authorizedKeys;
    };

    environment.etc."gatekeeper/policy.toml" = {
      text = cfg.policy;
      mode = "0644";
    };
    environment.etc."gatekeeper/docker/.keep".text = "";

    # Audit log: the agent may append, not read, create or replace it.
    systemd.tmpfiles.rules = [
      "d /var/log/gatekeeper 0755 root root -"
      "f /var/log/gatekeeper/audit.jsonl 0620 root ${cfg.user} -"
    ];

    services.openssh = {
      enable = true;
      settings.PermitUserEnvironment = false;
      # NixOS PAM for sshd does not read ~/.pam_environment unless asked to.
      extraConfig = ''
        Match User ${cfg.user}
          ForceCommand ${forcedCommand}
          AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u
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
          SetEnv LANG=C.UTF-8 LC_ALL=C.UTF-8
          MaxSessions 4
          ClientAliveInterval 30
          ClientAliveCountMax 3
      '';
    };
  };
}
