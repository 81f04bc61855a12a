"""`nucleus attest DIR` and `--verify-rootfs-attestation` from the command line: what a user types,
and the wrong inputs, each refused with one clear error and nothing written."""

from __future__ import annotations

from tests.helpers import describe, run_nucleus


def fails(result, stderr: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (125, "", stderr), describe(result)


def test_attest_writes_the_manifest_and_says_how_many_files(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sh").write_text("#!\n")
    result = run_nucleus(["attest", str(tmp_path)])
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{tmp_path}: 1 entry attested\n", ""), \
        describe(result)
    manifest = (tmp_path / ".nucleus-rootfs-sha256").read_text()
    assert manifest.endswith("  bin/sh\n") and len(manifest.split()[0]) == 64


def test_attest_refuses_a_missing_directory_and_a_store_path_that_is_not_one(tmp_path):
    fails(run_nucleus(["attest", str(tmp_path / "none")]),
          f"error: nucleus attest {str(tmp_path / 'none')!r}: not a directory\n")
    fails(run_nucleus(["attest", "--store-path", "/usr/lib", str(tmp_path)]),
          "error: --store-path names '/usr/lib', which is not a /nix/store/<hash>-<name> path\n")
    assert list(tmp_path.iterdir()) == []


def test_verify_without_a_rootfs_is_refused(tmp_path):
    fails(run_nucleus(["--root", str(tmp_path / "state"), "run", "--verify-rootfs-attestation", "--", "true"]),
          "error: --verify-rootfs-attestation needs --rootfs: without a closure there is nothing to verify\n"
          "hint: give the closure: --rootfs DIR\n")
    assert not (tmp_path / "state").exists()
