# lib.mkRootfs { pkgs, packages, name ? "nucleus-rootfs", passwd ? ..., group ? ... }: a closure
# directory for `nucleus run --rootfs`: bin, sbin, lib and usr/{bin,lib} lead into one environment
# of `packages`; etc holds passwd, group, hosts, nsswitch.conf and the CA certificates. Its
# .nucleus-rootfs-store-paths lists the closure (only those store paths are bound into the
# container), and .nucleus-rootfs-sha256 is written by `nucleus attest` itself, so the manifest is
# exactly what --verify-rootfs-attestation checks.
{ nucleus }:
{ pkgs
, packages
, name ? "nucleus-rootfs"
, passwd ? "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
, group ? "root:x:0:\nnogroup:x:65534:\n"
}:
let
  env = pkgs.buildEnv {
    name = "${name}-env";
    paths = packages;
    pathsToLink = [ "/bin" "/sbin" "/lib" "/libexec" "/share" ];
  };
  closure = pkgs.closureInfo { rootPaths = [ env pkgs.cacert ]; };
in
pkgs.runCommand name { nativeBuildInputs = [ nucleus ]; inherit passwd group; } ''
  mkdir -p $out/etc/ssl/certs $out/usr
  for dir in bin sbin lib; do
    if [ -d ${env}/$dir ]; then ln -s ${env}/$dir $out/$dir; fi
  done
  for dir in bin lib; do
    if [ -d ${env}/$dir ]; then ln -s ${env}/$dir $out/usr/$dir; fi
  done
  printf '%s' "$passwd" > $out/etc/passwd
  printf '%s' "$group" > $out/etc/group
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > $out/etc/hosts
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' > $out/etc/nsswitch.conf
  cp ${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt $out/etc/ssl/certs/ca-certificates.crt
  cp ${closure}/store-paths $out/.nucleus-rootfs-store-paths
  nucleus attest $out
''
