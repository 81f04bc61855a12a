# flake.nix's outputs against tests/nix/stub-nixpkgs.nix: what the package would be built from.
let
  flake = import ../../flake.nix;
  self = outputs // { outPath = toString ../..; };
  outputs = flake.outputs { inherit self; nixpkgs = import ./stub-nixpkgs.nix; };
  nucleus = outputs.packages.x86_64-linux.nucleus;
  pyseccomp = builtins.elemAt nucleus.dependencies 1;
  pathspec = builtins.elemAt nucleus.dependencies 2;
in
{
  inputs = flake.inputs;
  systems = builtins.attrNames outputs.packages;
  outputs = builtins.attrNames outputs;
  nucleus = { inherit (nucleus) pname version postPatch checkPhase; };
  pyseccomp = { inherit (pyseccomp) version postPatch; src = { inherit (pyseccomp.src) pname version hash; }; };
  pathspec = { inherit (pathspec) version; src = { inherit (pathspec.src) pname version hash; }; };
  mkRootfs = builtins.isFunction outputs.lib.mkRootfs;
  module = builtins.isFunction outputs.nixosModules.default;
  devShell = outputs.devShells.x86_64-linux.default.shellHook;
}
