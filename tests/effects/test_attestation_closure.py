"""Measuring a closure as the container sees it (nucleus.effects.attestation): symlinks resolved
from the closure's root, never the host's; loops and dangling links skipped; attest then verify."""

from __future__ import annotations

import os
import re

import pytest

from nucleus.config import attestation as fmt
from nucleus.effects import attestation
from nucleus.errors import InvalidInput


def sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def closure(tmp_path):
    root = tmp_path / "closure"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "usr" / "lib" / "libx.so").write_text("closure's lib\n")
    (root / "bin" / "tool").write_text("tool\n")
    return root


def test_symlinks_are_recorded_as_written_and_resolved_from_the_closures_root(closure):
    os.symlink("/usr/lib/libx.so", closure / "bin" / "lib")  # the closure's, not the host's
    os.symlink("/etc/passwd", closure / "bin" / "passwd")  # leads nowhere: recorded all the same
    os.symlink("../../../../../../usr/lib/libx.so", closure / "bin" / "up")  # .. stops at the root
    os.symlink("self", closure / "bin" / "self")  # a loop: leads nowhere
    os.symlink("usr/lib", closure / "lib")
    os.symlink("/", closure / "usr" / "lib" / "root")
    (closure / "opt").mkdir()  # not bound into the container: not the closure's
    (closure / "opt" / "unseen").write_text("")
    entries = attestation.measure(str(closure), ())
    assert entries == {"bin/tool": sha("tool\n"), "usr/lib/libx.so": sha("closure's lib\n"),
                       "bin/lib": "link:/usr/lib/libx.so", "bin/passwd": "link:/etc/passwd",
                       "bin/up": "link:../../../../../../usr/lib/libx.so", "bin/self": "link:self",
                       "lib": "link:usr/lib", "usr/lib/root": "link:/"}


@pytest.mark.parametrize("target", ["/tmp/payload", "../../proc/self/cwd/x", "/home/user/.x", "/run/secrets/k"])
def test_a_symlink_out_of_what_the_container_sees_of_the_closure_is_refused(closure, target):
    os.symlink(target, closure / "bin" / "tool2")
    with pytest.raises(InvalidInput, match=re.escape("'bin/tool2' leads to /")):
        attestation.measure(str(closure), ())


def test_a_symlink_leading_out_through_another_symlink_is_refused(closure):
    os.symlink("/tmp", closure / "usr" / "scratch")  # refused on its own too; the chain names the first
    os.symlink("/usr/scratch/x", closure / "bin" / "chained")
    with pytest.raises(InvalidInput, match="leads to /tmp"):
        attestation.measure(str(closure), ())


def test_anything_but_files_directories_and_symlinks_is_refused(closure):
    os.mkfifo(closure / "bin" / "pipe")
    with pytest.raises(InvalidInput, match="is a FIFO: a closure holds only files, directories and symlinks"):
        attestation.measure(str(closure), ())


def test_a_fan_of_directory_links_is_measured_once_per_entry(closure):
    """Links are never followed by the walk: a chain of directories each holding two links to the
    next costs one entry per link, not two to the power of its depth."""
    top = closure / "usr" / "chain"
    for level in range(40):
        (top / f"d{level}").mkdir(parents=True)
        for side in ("a", "b"):
            os.symlink(f"/usr/chain/d{level + 1}", top / f"d{level}" / side)
    (top / "d40").mkdir()
    entries = attestation.measure(str(closure), ())
    assert len(entries) == 2 + 80


def test_attest_then_verify_and_every_kind_of_change_is_named(closure):
    count, stores = attestation.attest(str(closure))
    assert (count, stores) == (2, ())
    assert (closure / fmt.MANIFEST).read_text() == (f"{sha('tool' + chr(10))}  bin/tool\n"
                                                    f"{sha('closure' + chr(39) + 's lib' + chr(10))}  usr/lib/libx.so\n")
    assert (closure / fmt.STORE_PATHS).read_text() == ""
    attestation.verify(str(closure), ())
    (closure / "bin" / "tool").write_text("tool!\n")
    (closure / "usr" / "lib" / "libx.so").unlink()
    (closure / "bin" / "new").write_text("")
    with pytest.raises(InvalidInput) as caught:
        attestation.verify(str(closure), ())
    assert str(caught.value) == (f"--verify-rootfs-attestation: the closure {str(closure)!r} is not what "
                                 ".nucleus-rootfs-sha256 says: 1 changed ('bin/tool'); 1 missing "
                                 "('usr/lib/libx.so'); 1 not in the manifest ('bin/new')")


def test_a_closure_without_a_manifest_is_refused_with_the_command_that_makes_one(closure):
    with pytest.raises(InvalidInput, match=re.escape(f"has no {fmt.MANIFEST}")) as caught:
        attestation.verify(str(closure), ())
    assert caught.value.hint == f"attest it when it is built: nucleus attest {closure}"


def test_a_manifest_that_is_not_a_regular_file_is_refused(closure, tmp_path):
    os.symlink(tmp_path / "elsewhere", closure / fmt.MANIFEST)
    (tmp_path / "elsewhere").write_text("")
    with pytest.raises(InvalidInput):  # O_NOFOLLOW: a link is never read through
        attestation.verify(str(closure), ())


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a directory under /nix/store (root)")
def test_store_paths_reached_by_links_are_found_and_attested_by_their_own_path(closure):
    import secrets
    import shutil

    made = [p for p in ("/nix", "/nix/store") if not os.path.exists(p)]
    for p in made:
        os.mkdir(p, 0o755)
    store = "/nix/store/" + secrets.token_hex(16) + "-test-attestation"
    try:
        os.makedirs(store + "/bin")
        with open(store + "/bin/sh", "w") as f:
            f.write("a shell\n")
        os.symlink(store + "/bin/sh", closure / "bin" / "sh")
        count, stores = attestation.attest(str(closure))
        assert stores == (store,)
        assert (closure / fmt.STORE_PATHS).read_text() == store + "\n"
        entries = fmt.parse((closure / fmt.MANIFEST).read_text(), "m")
        assert entries["bin/sh"] == fmt.LINK + store + "/bin/sh"
        assert entries[store + "/bin/sh"] == sha("a shell\n")
        assert count == len(entries) == 4
        attestation.verify(str(closure), stores)
        with open(store + "/bin/sh", "a") as f:
            f.write("changed\n")
        with pytest.raises(InvalidInput, match=re.escape(f"1 changed ('{store}/bin/sh')")):
            attestation.verify(str(closure), stores)
        os.symlink("/nix/store", closure / "bin" / "store")  # the whole store: never discovered
        (closure / fmt.STORE_PATHS).unlink()
        with pytest.raises(InvalidInput, match="leads to the whole store"):
            attestation.attest(str(closure))
    finally:
        shutil.rmtree(store, ignore_errors=True)
        for p in reversed(made):
            os.rmdir(p)


def test_attest_refuses_what_is_no_directory(tmp_path):
    with pytest.raises(InvalidInput, match="not a directory"):
        attestation.attest(str(tmp_path / "missing"))
    with pytest.raises(InvalidInput, match="--store-path '/nix/store/none-such': not a directory"):
        attestation.attest(str(tmp_path), ("/nix/store/none-such",))
    assert not (tmp_path / fmt.MANIFEST).exists()
