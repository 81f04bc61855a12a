# services.nucleus: containers as nucleus-<name>.service units, and topologies as
# nucleus-topology-<name>.service units (`nucleus compose up/down -f`). Every option maps onto the
# `nucleus run` flag of the same meaning (nix/args.nix); the units run as root, with the cgroup
# delegated to nucleus (Delegate=yes), and systemd's own hardening where it does not take away what
# nucleus needs to build the sandbox (mounts, namespaces, capabilities).
self:
{ config, lib, pkgs, utils, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types;
  cfg = config.services.nucleus;
  runArgs = import ./args.nix;

  secret = types.submodule {
    options = {
      source = mkOption { type = types.str; description = "File on the host, read once at start."; };
      dest = mkOption { type = types.str; description = "Path inside (under /run/secrets, or elsewhere)."; };
    };
  };

  container = types.submodule ({ name, ... }: {
    options = {
      rootfs = mkOption {
        type = types.str;
        description = "The closure (lib.mkRootfs), a /nix/store path.";
      };
      command = mkOption { type = types.listOf types.str; description = "The service's command line."; };
      serviceMode = mkOption {
        type = types.enum [ "agent" "strict-agent" "production" ];
        default = "production";
        description = "--service-mode.";
      };
      verifyRootfsAttestation = mkOption {
        type = types.bool;
        default = true;
        description = "--verify-rootfs-attestation (production requires it).";
      };
      user = mkOption { type = types.nullOr types.str; default = null; description = "--user."; };
      memory = mkOption { type = types.str; default = "512M"; description = "--memory (production requires it)."; };
      cpus = mkOption { type = types.str; default = "1"; description = "--cpus (production requires it)."; };
      pids = mkOption { type = types.int; default = 512; description = "--pids."; };
      network = mkOption {
        type = types.enum [ "none" "bridge" ];
        default = "none";
        description = "--network.";
      };
      dns = mkOption { type = types.listOf types.str; default = [ ]; description = "--dns (bridge in production needs one)."; };
      ports = mkOption { type = types.listOf types.str; default = [ ]; description = "--publish [IP:]HOST:CONTAINER[/PROTO]."; };
      egressAllow = mkOption { type = types.listOf types.str; default = [ ]; description = "--egress-allow CIDR."; };
      egressDomains = mkOption { type = types.listOf types.str; default = [ ]; description = "--egress-domain NAME."; };
      egressTcpPorts = mkOption { type = types.listOf types.int; default = [ ]; description = "--egress-tcp-port."; };
      egressUdpPorts = mkOption { type = types.listOf types.int; default = [ ]; description = "--egress-udp-port."; };
      secrets = mkOption { type = types.listOf secret; default = [ ]; description = "--secret SOURCE:DEST."; };
      environment = mkOption { type = types.attrsOf types.str; default = { }; description = "--env NAME=VALUE."; };
      healthCheck = mkOption { type = types.nullOr types.str; default = null; description = "--health-cmd."; };
      healthInterval = mkOption { type = types.int; default = 30; description = "--health-interval, seconds."; };
      healthRetries = mkOption { type = types.int; default = 3; description = "--health-retries."; };
      healthStartPeriod = mkOption { type = types.int; default = 5; description = "--health-start-period, seconds."; };
      readinessExec = mkOption { type = types.nullOr types.str; default = null; description = "--readiness-exec."; };
      readinessTcp = mkOption { type = types.nullOr types.int; default = null; description = "--readiness-tcp PORT."; };
      sdNotify = mkOption {
        type = types.bool;
        default = false;
        description = "--sd-notify: the unit is Type=notify, ready when nucleus says the service is.";
      };
      restart = mkOption {
        type = types.enum [ "no" "on-failure" "always" ];
        default = "on-failure";
        description = "systemd's Restart= for the unit.";
      };
      extraArgs = mkOption { type = types.listOf types.str; default = [ ]; description = "More `nucleus run` flags."; };
    };
  });

  topology = types.submodule {
    options = {
      configFile = mkOption { type = types.str; description = "The topology's TOML file."; };
    };
  };

  hardening = {
    # Kept: what does not take from nucleus the mounts, namespaces and capabilities it builds the
    # sandbox with. Left out: ProtectSystem, ProtectHome, PrivateTmp, PrivateDevices,
    # CapabilityBoundingSet, SystemCallFilter, RestrictNamespaces (each would refuse a step of
    # nucleus's own setup); the container gets its own, stricter, from nucleus.
    LockPersonality = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectClock = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    KeyringMode = "private";
  };

  nucleus = "${cfg.package}/bin/nucleus";

  unit = description: serviceConfig: {
    inherit description;
    wantedBy = [ "multi-user.target" ];
    after = [ "network-online.target" ];
    wants = [ "network-online.target" ];
    serviceConfig = hardening // serviceConfig // { Delegate = true; };
  };

  containerUnit = name: c: {
    name = "nucleus-${name}";
    value = unit "nucleus container ${name}" {
      Type = if c.sdNotify then "notify" else "simple";
      NotifyAccess = "main";
      ExecStart = utils.escapeSystemdExecArgs ([ nucleus "run" ] ++ runArgs name c ++ [ "--" ] ++ c.command);
      # "-": a container already gone is no failure of the stop.
      ExecStopPost = "-" + utils.escapeSystemdExecArgs [ nucleus "rm" "--force" name ];
      Restart = c.restart;
      KillMode = "mixed";
    };
  };

  topologyUnit = name: t: {
    name = "nucleus-topology-${name}";
    value = unit "nucleus topology ${name}" {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = utils.escapeSystemdExecArgs [ nucleus "compose" "up" "-f" t.configFile ];
      ExecStop = utils.escapeSystemdExecArgs [ nucleus "compose" "down" "-f" t.configFile ];
    };
  };
in
{
  options.services.nucleus = {
    enable = mkEnableOption "nucleus containers and topologies";
    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.nucleus;
      description = "The nucleus package.";
    };
    containers = mkOption {
      type = types.attrsOf container;
      default = { };
      description = "Containers, each run as the unit nucleus-<name>.service.";
    };
    topologies = mkOption {
      type = types.attrsOf topology;
      default = { };
      description = "Topologies (nucleus compose), each the unit nucleus-topology-<name>.service.";
    };
  };

  config = mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    systemd.services = builtins.listToAttrs
      (lib.mapAttrsToList containerUnit cfg.containers ++ lib.mapAttrsToList topologyUnit cfg.topologies);
  };
}
