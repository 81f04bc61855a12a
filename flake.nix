{
  description = "nucleus: a security-hardened, Nix-native Linux container runtime";

  # Pinned by revision (nixos-25.11); `nix flake lock` records its hash on first use, and
  # `nix flake update` moves it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/8fd9daa3db09ced9700431c5b7ad0e8ba199b575";

  outputs = { self, nixpkgs }:
    let
      # x86_64 only: the seccomp profiles and the syscall tables are x86_64's so far.
      systems = [ "x86_64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      pythonPackages = pkgs:
        let
          py = pkgs.python3.pkgs;
          libseccomp = "${pkgs.libseccomp.lib}/lib/libseccomp.so.2";
        in
        rec {
          pyseccomp = py.buildPythonPackage rec {
            pname = "pyseccomp";
            version = "0.1.2";
            format = "setuptools";
            src = py.fetchPypi {
              inherit pname version;
              hash = "sha256-DVTvrPcb2kvf0hIz9URLcwy+z1k9YC95bmQSqGgiWL0=";
            };
            # pyseccomp looks libseccomp up with ctypes.util.find_library, which finds nothing
            # on NixOS: give it the store path.
            postPatch = ''
              substituteInPlace pyseccomp.py \
                --replace-fail 'ctypes.util.find_library("seccomp")' '"${libseccomp}"'
            '';
            doCheck = false;
          };
          # .nucleusignore patterns use pathspec 1.0's GitIgnoreSpecPattern.
          pathspec =
            if pkgs.lib.versionAtLeast py.pathspec.version "1.0" then py.pathspec
            else py.pathspec.overridePythonAttrs (old: rec {
              version = "1.1.1";
              src = py.fetchPypi {
                pname = "pathspec";
                inherit version;
                hash = "sha256-F9tezVJBBKEg4XOBTJA2epapjQfEWy4QwvORn/+Rv1o=";
              };
            });
          runtime = [ py.click pyseccomp pathspec py.pyroute2 py.dnspython ];
          testing = [ py.pytest py.hypothesis ];
          inherit libseccomp;
        };

      package = pkgs:
        let
          py = pkgs.python3.pkgs;
          deps = pythonPackages pkgs;
        in
        py.buildPythonApplication {
          pname = "nucleus";
          version = "0.1.0";
          pyproject = true;
          src = self;
          build-system = [ py.setuptools ];
          dependencies = deps.runtime;
          # nucleus loads libseccomp by soname; on NixOS the store path is the name.
          postPatch = ''
            substituteInPlace nucleus/effects/abi.py \
              --replace-fail 'LIBSECCOMP = "libseccomp.so.2"' 'LIBSECCOMP = "${deps.libseccomp}"'
          '';
          nativeCheckInputs = deps.testing;
          # The kernel tests need root and real namespaces: the build sandbox runs the pure ones.
          checkPhase = ''
            runHook preCheck
            python -m pytest -q -p no:randomly tests/unit tests/model tests/replay
            runHook postCheck
          '';
          meta = {
            description = "Security-hardened, Nix-native Linux container runtime";
            mainProgram = "nucleus";
            platforms = [ "x86_64-linux" ];
          };
        };
    in
    {
      packages = forAll (pkgs: rec {
        nucleus = package pkgs;
        default = nucleus;
      });

      # The package's build runs the pure tests (checkPhase).
      checks = forAll (pkgs: { nucleus = self.packages.${pkgs.stdenv.hostPlatform.system}.nucleus; });

      apps = forAll (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.nucleus}/bin/nucleus";
        };
      });

      lib.mkRootfs = args: import ./nix/rootfs.nix
        { nucleus = self.packages.${args.pkgs.stdenv.hostPlatform.system}.nucleus; } args;

      nixosModules.default = import ./nix/module.nix self;

      devShells = forAll (pkgs:
        let deps = pythonPackages pkgs; in {
          default = pkgs.mkShell {
            packages = [
              (pkgs.python3.withPackages (ps: deps.runtime ++ deps.testing ++ [ ps.mypy ]))
              pkgs.ruff
              pkgs.gcc
              pkgs.libseccomp
              pkgs.iproute2
              pkgs.nftables
              pkgs.iptables
              pkgs.jre_headless
              pkgs.tlaplus
            ];
            shellHook = ''
              export TLA2TOOLS=${pkgs.tlaplus}/share/java/tla2tools.jar
            '';
          };
        });
    };
}
