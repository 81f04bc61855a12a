# lib.mkRootfs (nix/rootfs.nix) with builders that stand for the store paths a test made: the
# build script and its environment, for the test to run as Nix would.
{ env, closure, cacert, name ? "nucleus-rootfs" }:
let
  pkgs = {
    buildEnv = _: env;
    closureInfo = _: closure;
    inherit cacert;
    runCommand = name: attrs: script: { inherit name script; inherit (attrs) passwd group; };
  };
in
import ../../nix/rootfs.nix { nucleus = "nucleus"; } { inherit pkgs name; packages = [ ]; }
