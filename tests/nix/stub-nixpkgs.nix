# A stand-in for nixpkgs with what flake.nix touches: each builder returns its arguments, so a
# test reads what the flake would build (the sources' hashes, the patches) without building.
let
  builder = kind: args: args // { _builder = kind; };
  py = {
    buildPythonPackage = builder "buildPythonPackage";
    buildPythonApplication = builder "buildPythonApplication";
    fetchPypi = builder "fetchPypi";
    click = "click";
    pathspec = { version = "0.12.1"; overridePythonAttrs = f: f { } // { _builder = "overridden pathspec"; }; };
    pyroute2 = "pyroute2";
    dnspython = "dnspython";
    pytest = "pytest";
    hypothesis = "hypothesis";
    setuptools = "setuptools";
    mypy = "mypy";
  };
  pkgs = {
    stdenv.hostPlatform.system = "x86_64-linux";
    lib = { versionAtLeast = a: b: builtins.compareVersions a b >= 0; };
    python3 = { pkgs = py; withPackages = f: { _builder = "python3.withPackages"; packages = f py; }; };
    libseccomp.lib = "/nix/store/11111111111111111111111111111111-libseccomp-lib";
    mkShell = builder "mkShell";
    ruff = "ruff"; gcc = "gcc"; iproute2 = "iproute2"; nftables = "nftables"; iptables = "iptables";
    jre_headless = "jre"; tlaplus = "/nix/store/22222222222222222222222222222222-tlaplus";
  };
in
{
  lib.genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
  legacyPackages.x86_64-linux = pkgs;
}
