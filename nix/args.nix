# The `nucleus run` arguments of one container of the NixOS module (services.nucleus.containers.<name>),
# in the order the CLI documents them. Only builtins: the tests evaluate it without nixpkgs.
name: c:
let
  opt = flag: value: if value == null then [ ] else [ flag (toString value) ];
  many = flag: values: builtins.concatMap (v: [ flag (toString v) ]) values;
  switch = flag: on: if on then [ flag ] else [ ];
in
[ "--name" name "--service-mode" c.serviceMode ]
++ opt "--rootfs" c.rootfs
++ switch "--verify-rootfs-attestation" c.verifyRootfsAttestation
++ opt "--user" c.user
++ opt "--memory" c.memory
++ opt "--cpus" c.cpus
++ opt "--pids" c.pids
++ [ "--network" c.network ]
++ many "--dns" c.dns
++ many "--publish" c.ports
++ many "--egress-allow" c.egressAllow
++ many "--egress-domain" c.egressDomains
++ many "--egress-tcp-port" c.egressTcpPorts
++ many "--egress-udp-port" c.egressUdpPorts
++ many "--secret" (map (s: "${s.source}:${s.dest}") c.secrets)
++ many "--env" (builtins.attrValues (builtins.mapAttrs (k: v: "${k}=${v}") c.environment))
++ opt "--health-cmd" c.healthCheck
++ (if c.healthCheck == null then [ ] else
      [ "--health-interval" (toString c.healthInterval) "--health-retries" (toString c.healthRetries)
        "--health-start-period" (toString c.healthStartPeriod) ])
++ opt "--readiness-exec" c.readinessExec
++ opt "--readiness-tcp" c.readinessTcp
++ switch "--sd-notify" c.sdNotify
++ c.extraArgs
