"""How big a copied context may be, what a run says it left out, and the context flags'
validation (nucleus.config.context): pure."""

from __future__ import annotations

import pytest

from nucleus.config.container import ContainerConfig, validate
from nucleus.config.context import (
    PAGE,
    Measured,
    footprint,
    human,
    left_out_lines,
    left_out_note,
    rootless_refusal,
    size_refusal,
    sparse,
)
from nucleus.errors import InvalidInput

GiB, MiB = 1 << 30, 1 << 20


def test_footprint_counts_pages_and_only_the_data_of_a_sparse_file():
    assert footprint(0, 0) == 0
    assert footprint(1, 8) == PAGE
    assert footprint(PAGE + 1, 16) == 2 * PAGE
    assert footprint(2 * GiB, 0) == 0  # all hole: the copy keeps it a hole
    assert footprint(2 * GiB, 8) == PAGE  # one 4 KiB block of data
    assert sparse(2 * GiB, 8) and not sparse(100, 8)


@pytest.mark.parametrize(("n", "shown"), [(0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"),
                                          (1536, "1.5 KiB"), (GiB, "1 GiB"), (2 * GiB + GiB // 10, "2.1 GiB")])
def test_human_sizes(n, shown):
    assert human(n) == shown


def test_a_copy_that_does_not_fit_is_refused_with_the_total_the_largest_and_the_flag():
    measured = Measured(files=3, bytes=2 * GiB + 8 * MiB,
                        largest=(("data/big.bin", 2 * GiB), ("a.iso", 4 * MiB), ("b", 4 * MiB)))
    assert size_refusal("./ctx", measured, 2 * GiB + 8 * MiB) is None
    problem = size_refusal("./ctx", measured, GiB)
    assert problem is not None
    assert problem.message == (
        "--context './ctx': its copy takes 2.0 GiB (3 files), more than the 1 GiB of "
        "--context-size; the largest: 'data/big.bin' (2 GiB), 'a.iso' (4 MiB), 'b' (4 MiB)")
    assert problem.hint == ("raise the limit (--context-size 2570M), leave files out in a "
                            ".nucleusignore at the context's root, or bind the tree read-only "
                            "(--context-mode bind)")


def test_the_note_names_what_the_secret_rules_left_out():
    junk_only = Measured(left_out=((".git/", ".git"), ("node_modules/", "node_modules"),
                                   ("build/", ".nucleusignore:build/"), ("fifo", "special")))
    assert left_out_note(junk_only) is None
    one = Measured(left_out=((".env", ".env"), (".git/", ".git")))
    assert left_out_note(one) == (
        "--context: left out 1 secret entry: '.env' (--show-excluded lists every entry left out, "
        "with its rule; --context-include keeps one)")
    many = Measured(left_out=tuple((f"k{i}.key", "*.key") for i in range(7)))
    assert left_out_note(many).startswith(
        "--context: left out 7 secret entries: 'k0.key', 'k1.key', 'k2.key', 'k3.key', 'k4.key' "
        "and 2 more (")


def test_show_excluded_lists_every_entry_with_its_rule():
    measured = Measured(left_out=((".git/", ".git"), ("deploy", "content:private-key"),
                                  ("out.log", ".nucleusignore:*.log"), ("p", "special")))
    assert left_out_lines(measured) == [
        "--context: left out '.git/': version-control metadata (.git)",
        "--context: left out 'deploy': private key (by its content)",
        "--context: left out 'out.log': .nucleusignore (*.log)",
        "--context: left out 'p': not a file, directory or symlink",
    ]


def test_a_rootless_run_as_root_refuses_a_tree_it_would_read_as_another_user():
    assert rootless_refusal("ctx", 0, Measured()) is None
    problem = rootless_refusal("ctx", 1000, Measured(identities=((1001, 1001, ()),)))
    assert problem is not None and problem.message.startswith(
        "--context 'ctx': holds directories of uid 1000, 1001, which a copy by root reads as their owner")


def config(**fields) -> ContainerConfig:
    return ContainerConfig(argv=("true",), **fields)


@pytest.mark.parametrize(("fields", "message"), [
    ({"context_size": GiB}, "--context-size needs --context"),
    ({"context_include": (".env.test",)}, "--context-include needs --context"),
    ({"show_excluded": True}, "--show-excluded needs --context"),
    ({"context": "/src", "context_mode": "bind", "context_size": GiB},
     "--context-size applies to a copied context, not --context-mode bind"),
    ({"context": "/src", "context_mode": "bind", "show_excluded": True},
     "--show-excluded applies to a copied context, not --context-mode bind"),
    ({"context": "/src", "context_size": 100}, "--context-size 100: less than a page (4096 bytes)"),
    ({"context": "/src", "context_include": ("!x",)}, "--context-include '!x': not a pattern to keep"),
    ({"context": "/src", "context_include": ("# c",)}, "--context-include '# c': not a pattern to keep"),
    ({"context": "/src", "context_include": ("",)}, "--context-include '': not a pattern to keep"),
])
def test_the_context_flags_are_validated_before_anything_runs(fields, message):
    with pytest.raises(InvalidInput) as info:
        validate(config(**fields))
    assert info.value.message == message


def test_valid_context_flags_pass():
    validate(config(context="/src", context_size=2 * GiB, context_include=(".env.test", "keys/"),
                    show_excluded=True))
