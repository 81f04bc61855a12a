"""The rootfs manifest's format (nucleus.config.attestation): written, read back, compared."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus.config import attestation as fmt
from nucleus.errors import InvalidInput

DIGEST = "ab" * 32

names = st.text(st.characters(blacklist_characters="\n\r\t\\/", blacklist_categories=("Cs",)), min_size=1,
                max_size=12).filter(lambda n: n not in (".", "..") and n.strip() == n)
paths = st.lists(names, min_size=1, max_size=3).map("/".join)
digests = st.text("0123456789abcdef", min_size=64, max_size=64)
values = digests | paths.map(lambda p: fmt.LINK + p)


@given(st.dictionaries(paths, values, max_size=20))
def test_a_manifest_reads_back_as_written(entries):
    assert fmt.parse(fmt.render(entries), "m") == entries


def test_files_in_sha256sums_format_and_links_with_their_targets_sorted_by_path():
    text = fmt.render({"usr/lib/b": DIGEST, "bin/sh": fmt.LINK + "/nix/store/x-a/bin/dash",
                       "/nix/store/x-a/bin/dash": "cd" * 32})
    assert text == (f"{'cd' * 32}  /nix/store/x-a/bin/dash\nlink\tbin/sh\t/nix/store/x-a/bin/dash\n"
                    f"{DIGEST}  usr/lib/b\n")


@pytest.mark.parametrize("line, why", [
    ("xyz  bin/sh", "line 1 is neither '<sha256>  <path>' nor 'link<TAB><path><TAB><target>'"),
    (f"{DIGEST.upper()}  bin/sh", "line 1 is neither"),
    (f"{DIGEST}\tbin/sh", "line 1 is neither"),
    (f"{DIGEST}  ../etc/shadow", "line 1 names a path neither inside the closure nor in /nix/store"),
    (f"{DIGEST}  /etc/shadow", "line 1 names a path neither inside the closure nor in /nix/store"),
    (f"{DIGEST}  bin/sh\nlink\tbin/sh\tdash", "line 2 names a path a second time"),
])
def test_a_damaged_manifest_is_refused_naming_the_line_not_its_content(line, why):
    with pytest.raises(InvalidInput, match="^m: " + __import__("re").escape(why)):
        fmt.parse(line, "m")


@pytest.mark.parametrize("entries", [{"a\nb": DIGEST}, {"a\tb": DIGEST}, {"bin/x": fmt.LINK + "a\tb"}])
def test_a_path_or_target_a_line_cannot_carry_is_refused(entries):
    with pytest.raises(InvalidInput, match="a path or link target with a newline, a tab or a backslash"):
        fmt.render(entries)


@pytest.mark.parametrize("parts, target, resolved", [
    (["bin", "sh"], "dash", ["bin", "dash"]),
    (["bin", "sh"], "/usr/bin/dash", ["usr", "bin", "dash"]),
    (["usr", "lib", "x"], "../../../../../etc/passwd", ["etc", "passwd"]),
    (["bin", "sh"], "./../tmp/./x", ["tmp", "x"]),
])
def test_a_link_resolves_from_the_containers_root(parts, target, resolved):
    assert fmt.resolve(parts, target) == resolved


@pytest.mark.parametrize("path, stores, seen", [
    ("bin/sh", (), True), ("etc/passwd", (), True), ("tmp/x", (), False), ("proc/1/root", (), False),
    ("nix/store/a-x/bin", (), True), ("nix/store/a-x/bin", ("/nix/store/a-x",), True),
    ("nix/store/b-y/bin", ("/nix/store/a-x",), False), ("opt/tool", (), False), ("", (), True),
])
def test_what_the_container_sees_of_a_closure(path, stores, seen):
    assert fmt.seen_by_container([p for p in path.split("/") if p], stores) is seen


@pytest.mark.parametrize("text", ["/nix/store/", "/usr/lib", "/nix/store/a/b", "/nix/store/.."])
def test_store_paths_must_be_store_paths(text):
    with pytest.raises(InvalidInput, match="not a /nix/store/<hash>-<name> path"):
        fmt.parse_store_paths(text, "f")


def test_store_paths_are_sorted_and_unique():
    assert fmt.parse_store_paths("/nix/store/b-x\n\n/nix/store/a-y/\n/nix/store/b-x\n", "f") == (
        "/nix/store/a-y", "/nix/store/b-x")


def test_differences_name_each_kind_and_count_beyond_five():
    expected = {f"f{i}": DIGEST for i in range(8)} | {"same": DIGEST, "changed": DIGEST}
    found = {"same": DIGEST, "changed": "cd" * 32, "new": DIGEST}
    d = fmt.compare(expected, found)
    assert (d.changed, d.extra) == (("changed",), ("new",))
    assert d.summary() == ("1 changed ('changed'); 8 missing ('f0', 'f1', 'f2', 'f3', 'f4' and 3 more); "
                           "1 not in the manifest ('new')")
    assert not fmt.compare(found, found)
