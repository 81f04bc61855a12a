# The units nix/module.nix makes for `containers` and `topologies` (each filled in from the
# module's own option defaults, as the module system would): { <unit> = serviceConfig; }.
{ containers ? { }, topologies ? { } }:
let
  lib = import ./stub-lib.nix;
  utils = { inherit (lib) escapeSystemdExecArgs; };
  pkgs = { stdenv.hostPlatform.system = "x86_64-linux"; };
  self = { packages.x86_64-linux.nucleus = "/nix/store/00000000000000000000000000000000-nucleus"; };
  module = import ../../nix/module.nix self;
  declared = (module { config = { }; inherit lib pkgs utils; }).options.services.nucleus;
  submoduleOptions = type: name:
    let m = type.elemType.module; in (if builtins.isFunction m then m { inherit name; } else m).options;
  filled = type: name: given:
    builtins.mapAttrs (k: o: given.${k} or o.default) (submoduleOptions type name);
  cfg = {
    enable = true;
    package = declared.package.default;
    containers = builtins.mapAttrs (filled declared.containers.type) containers;
    topologies = builtins.mapAttrs (filled declared.topologies.type) topologies;
  };
  evaluated = module { config.services.nucleus = cfg; inherit lib pkgs utils; };
in
builtins.mapAttrs (_: unit: unit.serviceConfig) evaluated.config.content.systemd.services
