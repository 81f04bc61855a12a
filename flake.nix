{
  description = "nucleus: a security-hardened, Nix-native Linux container runtime";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs:
        let
          py = pkgs.python3.pkgs;
          pyseccomp = py.buildPythonPackage rec {
            pname = "pyseccomp";
            version = "0.1.2";
            format = "setuptools";
            src = py.fetchPypi {
              inherit pname version;
              # Set on first build: nix reports the expected hash.
              hash = pkgs.lib.fakeHash;
            };
            # pyseccomp opens libseccomp by soname at run time.
            postPatch = ''
              substituteInPlace pyseccomp.py \
                --replace-quiet 'libseccomp.so.2' '${pkgs.libseccomp.lib}/lib/libseccomp.so.2'
            '';
            doCheck = false;
          };
          nucleus = py.buildPythonApplication {
            pname = "nucleus";
            version = "0.1.0";
            pyproject = true;
            src = self;
            build-system = [ py.setuptools ];
            dependencies = [ py.click pyseccomp ];
            nativeCheckInputs = [ py.pytest py.hypothesis ];
            # The kernel tests need root and real namespaces: the sandbox runs the pure ones.
            checkPhase = ''
              runHook preCheck
              python -m pytest -q tests/unit tests/model tests/replay
              runHook postCheck
            '';
            meta = {
              description = "Security-hardened, Nix-native Linux container runtime";
              mainProgram = "nucleus";
              platforms = pkgs.lib.platforms.linux;
            };
          };
        in
        {
          inherit nucleus;
          default = nucleus;
        });

      apps = forAll (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.system}.default}/bin/nucleus";
        };
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (ps: [ ps.click ps.pytest ps.hypothesis ps.mypy ]))
            pkgs.ruff
            pkgs.libseccomp
            pkgs.apalache
            pkgs.tlaplus
            pkgs.jdk17_headless
          ];
          shellHook = ''
            export TLA2TOOLS=${pkgs.tlaplus}/share/java/tla2tools.jar
          '';
        };
      });
    };
}
