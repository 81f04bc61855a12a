"""Resource limits: parsing and validation of --memory, --cpus, --pids, --io-limit and friends."""

from __future__ import annotations

import pytest

from nucleus.config import resources as r
from nucleus.config.resources import IoLimit, Limits, parse_io_limit, parse_size, validate_limits
from nucleus.errors import InvalidInput

K, M, G = 1024, 1024**2, 1024**3


def error(fn, *args, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as e:
        fn(*args, **kwargs)
    return e.value


@pytest.mark.parametrize("text, expected", [
    ("512M", 512 * M), ("1G", G), ("1.5g", G + G // 2), ("100k", 100 * K), ("4096", 4096),
    ("0", 0), ("2T", 2 * 1024 * G), ("512MB", 512 * M), ("512MiB", 512 * M), (" 64m ", 64 * M),
    ("0.5K", 512), ("1.3k", 1331), (1048576, M),
])
def test_parse_size(text, expected):
    assert parse_size(text, "--memory") == expected


@pytest.mark.parametrize("text", ["12Q", "", "-1G", "1e6", "M", "1.5.2G", "0x10", "1 G B"])
def test_parse_size_rejects(text):
    e = error(parse_size, text, "--memory")
    assert e.message == f"--memory {text!r}: not a size"
    assert e.hint == "use a number with an optional K, M, G or T suffix, e.g. 512M"


def test_parse_size_needs_whole_bytes_and_fits_64_bits():
    e = error(parse_size, "1.5", "--memlock")
    assert (e.message, e.hint) == ("--memlock '1.5': not a whole number of bytes",
                                   "give whole bytes, or a suffix such as 1.5K")
    e = error(parse_size, "9000000T", "--swap")
    assert (e.message, e.hint) == ("--swap '9000000T': too large", "at most 8388607T (2^63-1 bytes)")
    assert error(parse_size, True, "--memory").message == "--memory True: not a size"


def test_defaults_match_the_reference():
    limits = validate_limits()
    assert limits == Limits()
    assert (limits.pids, limits.nofile, limits.memlock) == (512, 1024, 64 * K)
    assert limits.cgroup_parent == "nucleus"
    assert (limits.memory, limits.memory_high, limits.swap, limits.cpus) == (None,) * 4
    assert (limits.cpu_quota, limits.cpu_shares, limits.swap_max, limits.memsw) == (None,) * 4
    assert limits.io == () and limits.nproc == 512


def test_memory_high_is_90_percent_and_swap_is_off_by_default():
    limits = validate_limits(memory="1G")
    assert limits.memory == G and limits.memory_high == G * 9 // 10
    assert (limits.swap, limits.swap_max, limits.memsw) == (None, 0, G)
    limits = validate_limits(memory="1G", swap="512M", memory_high="768M")
    assert (limits.memory_high, limits.swap_max, limits.memsw) == (768 * M, 512 * M, G + 512 * M)
    assert Limits(memory=100 * M).memory_high == 90 * M


def test_memory_errors():
    e = error(validate_limits, memory="12Q")
    assert e.message == "--memory '12Q': not a size"
    e = error(validate_limits, memory="1M")
    assert (e.message, e.hint) == ("--memory '1M': must be at least 6M",
                                   "a smaller limit kills most programs while they start")
    e = error(validate_limits, swap="1G")
    assert e.message == "--swap '1G': needs --memory"
    assert e.hint == "swap is allowed on top of the memory limit, e.g. --memory 512M --swap 256M"
    e = error(validate_limits, memory="1G", memory_high="2G")
    assert e.message == "--memory-high '2G': must not exceed --memory '1G'"
    assert error(validate_limits, memory_high="1G").message == "--memory-high '1G': needs --memory"


def test_cpus():
    limits = validate_limits(cpus="0.2")
    assert (limits.cpus, limits.cpu_quota, limits.cpu_period) == (0.2, 20_000, 100_000)
    assert validate_limits(cpus=2).cpu_quota == 200_000
    assert validate_limits(cpus="0.01").cpu_quota == 1_000
    e = error(validate_limits, cpus="0")
    assert (e.message, e.hint) == ("--cpus '0': must be more than 0", None)
    assert error(validate_limits, cpus="-1").message == "--cpus '-1': must be more than 0"
    e = error(validate_limits, cpus="0.001")
    assert (e.message, e.hint) == ("--cpus '0.001': must be at least 0.01",
                                   "the kernel's smallest CPU quota is 1 ms per 100 ms period")
    for bad in ("abc", "nan", "inf", ""):
        e = error(validate_limits, cpus=bad)
        assert (e.message, e.hint) == (f"--cpus {bad!r}: not a number",
                                       "give a number of CPUs such as 0.5 or 2")


@pytest.mark.parametrize("weight, shares", [(1, 2), (100, 2597), (10000, 262144), (5000, 131059)])
def test_cpu_weight_maps_to_v1_shares_as_runc(weight, shares):
    limits = validate_limits(cpu_weight=str(weight))
    assert (limits.cpu_weight, limits.cpu_shares) == (weight, shares)


def test_cpu_weight_errors():
    e = error(validate_limits, cpu_weight="0")
    assert e.message == "--cpu-weight '0': must be between 1 and 10000"
    assert e.hint == "100 is the default; 200 gets twice the CPU time of 100 under contention"
    assert error(validate_limits, cpu_weight="10001").message == (
        "--cpu-weight '10001': must be between 1 and 10000")
    assert error(validate_limits, cpu_weight="1.5").message == (
        "--cpu-weight '1.5': not a whole number")


def test_pids():
    assert validate_limits(pids="20").pids == 20
    assert validate_limits(pids=None).pids == 512
    e = error(validate_limits, pids="0")
    assert (e.message, e.hint) == ("--pids '0': must be at least 1",
                                   "the container's first process counts as one")
    assert error(validate_limits, pids="many").message == "--pids 'many': not a whole number"
    assert error(validate_limits, pids="4194305").message == (
        "--pids '4194305': must be at most 4194304")


def test_nofile_and_memlock():
    limits = validate_limits(nofile="4096", memlock="1M")
    assert (limits.nofile, limits.memlock) == (4096, M)
    assert error(validate_limits, nofile="0").message == "--nofile '0': must be at least 1"
    assert error(validate_limits, memlock="lots").message == "--memlock 'lots': not a size"


def test_io_limit():
    assert parse_io_limit("8:0 riops=100 wiops=200 rbps=10M wbps=1048576") == IoLimit(
        8, 0, riops=100, wiops=200, rbps=10 * M, wbps=M)
    assert parse_io_limit("254:16,wbps=1G") == IoLimit(254, 16, wbps=G)
    assert parse_io_limit("8:0 rbps=1").device == "8:0"
    limits = validate_limits(io=["8:0 rbps=1M", "8:16 wiops=10"])
    assert limits.io == (IoLimit(8, 0, rbps=M), IoLimit(8, 16, wiops=10))
    assert validate_limits(io="8:0 rbps=1M").io == (IoLimit(8, 0, rbps=M),)


@pytest.mark.parametrize("text, message, hint", [
    ("8:0", "--io-limit '8:0': no limit given",
     'use "MAJOR:MINOR key=value ...", e.g. --io-limit "8:0 rbps=10M wiops=100"'),
    ("", "--io-limit '': empty",
     'use "MAJOR:MINOR key=value ...", e.g. --io-limit "8:0 rbps=10M wiops=100"'),
    ("sda rbps=1M", "--io-limit 'sda rbps=1M': 'sda' is not a MAJOR:MINOR device number",
     "find it with: lsblk -o NAME,MAJ:MIN"),
    ("8:0 foo=1", "--io-limit '8:0 foo=1': unknown key 'foo'", "use riops, wiops, rbps or wbps"),
    ("8:0 rbps", "--io-limit '8:0 rbps': unknown key 'rbps'", "use riops, wiops, rbps or wbps"),
    ("8:0 rbps=1 rbps=2", "--io-limit '8:0 rbps=1 rbps=2': rbps is given twice", None),
    ("8:0 riops=0", "--io-limit '8:0 riops=0': riops must be more than 0",
     "leave the key out for no limit in that direction"),
    ("8:0 riops=1k", "--io-limit '8:0 riops=1k': riops '1k': not a whole number", None),
    ("8:0 rbps=x", "--io-limit '8:0 rbps=x': rbps 'x': not a size",
     "use a number with an optional K, M, G or T suffix, e.g. 512M"),
])
def test_io_limit_errors(text, message, hint):
    e = error(parse_io_limit, text)
    assert (e.message, e.hint) == (message, hint)


def test_io_limit_device_twice():
    e = error(validate_limits, io=["8:0 rbps=1M", "8:0 wbps=1M"])
    assert (e.message, e.hint) == ("--io-limit '8:0 wbps=1M': device 8:0 is limited twice",
                                   "put all limits of one device in one --io-limit")


@pytest.mark.parametrize("text, parent", [
    ("nucleus", "nucleus"), ("/nucleus", "nucleus"), ("nucleus/", "nucleus"),
    ("/nucleus/agents", "nucleus/agents"), ("my.slice/box", "my.slice/box"),
])
def test_cgroup_parent(text, parent):
    assert validate_limits(cgroup_parent=text).cgroup_parent == parent


HINT = "give a path below the hierarchy root, such as nucleus or nucleus/agents"


@pytest.mark.parametrize("text, message, hint", [
    ("/", "--cgroup-parent '/': is the hierarchy root", HINT),
    ("", "--cgroup-parent '': is the hierarchy root", HINT),
    ("a/../b", "--cgroup-parent 'a/../b': '..' is not allowed", HINT),
    ("..", "--cgroup-parent '..': '..' is not allowed", HINT),
    ("a/./b", "--cgroup-parent 'a/./b': '.' is not allowed", HINT),
    ("a//b", "--cgroup-parent 'a//b': has an empty path component", HINT),
    ("a\nb", "--cgroup-parent 'a\\nb': holds a control character", HINT),
    ("process_api", "--cgroup-parent 'process_api': refused: 'process_api' belongs to the "
     "machine's supervisor", "choose another parent, e.g. nucleus"),
    ("/process_api/x", "--cgroup-parent '/process_api/x': refused: 'process_api' belongs to "
     "the machine's supervisor", "choose another parent, e.g. nucleus"),
    ("nucleus/my-process_api-copy", "--cgroup-parent 'nucleus/my-process_api-copy': refused: "
     "'process_api' belongs to the machine's supervisor", "choose another parent, e.g. nucleus"),
    ("x" * 256, f"--cgroup-parent '{'x' * 256}': a path component is longer than 255 bytes",
     None),
])
def test_cgroup_parent_errors(text, message, hint):
    e = error(validate_limits, cgroup_parent=text)
    assert (e.message, e.hint) == (message, hint)


def test_labels_name_another_source():
    e = error(validate_limits, pids=0, labels={"pids": "nucleus.toml: limits.pids"})
    assert e.message == "nucleus.toml: limits.pids '0': must be at least 1"
    limits = validate_limits(memory=64 * M, cpus=1.5, pids=10, cpu_weight=50)
    assert (limits.memory, limits.cpus, limits.pids, limits.cpu_weight) == (64 * M, 1.5, 10, 50)


def test_limits_are_immutable_values():
    limits = validate_limits(memory="64M")
    with pytest.raises(AttributeError):
        limits.memory = 1  # type: ignore[misc]
    assert limits == validate_limits(memory=str(64 * M))
    assert hash(limits) == hash(validate_limits(memory="64M"))


def test_the_module_is_pure():
    """No host access: only the standard library's data modules, the error vocabulary and the
    frozen records."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(r.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "math", "re", "collections.abc", "dataclasses", "typing",
                        "nucleus.errors", "nucleus.frozen"}
