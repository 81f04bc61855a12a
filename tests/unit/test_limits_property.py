"""Every limit value a user can give (--memory, --swap, --cpus, --cpu-weight, --pids, --io-limit,
--memlock; as text from the command line or as numbers from a file), generated: text with signs,
decimals, exponents, units and junk; integers negative and huge (beyond 2^64, beyond what Python
converts to text); floats including NaN and infinities. Whatever is given, validation and the
cgroup plan (cgroup v1 and v2, on a host with 2 CPUs and two disks) never fail with anything
but InvalidInput; a refusal names the flag and the value; and what is planned is what the
kernel takes: every value written to a control file an integer within the range of the type
the kernel keeps it in, and the rlimits within theirs."""

from __future__ import annotations

import re

from hypothesis import event, given, settings
from hypothesis import strategies as st

from nucleus.config.resources import FLAGS, Limits, show, validate_limits
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout
from nucleus.plan.cgroups import CgroupPlan, plan

U64 = (1 << 64) - 1
S64 = (1 << 63) - 1
U32 = (1 << 32) - 1
PID_MAX_LIMIT = 4 * 1024 * 1024
MAX_CFS_QUOTA_US = (1 << 44) - 1  # kernel/sched/core.c: max_cfs_runtime
HOST_CPUS = 2
DEVICES = (("8:0", "8:0"), ("8:1", "8:0"), ("254:0", "254:0"))  # a disk, its partition, a disk
DISKS = {"8:0", "254:0"}

ROOT = "/sys/fs/cgroup"
V2 = CgroupLayout("v2", ((UNIFIED, ROOT),), ("cpu", "io", "memory", "pids"),
                  ("cpu", "io", "memory", "pids"), None, ROOT)
V1_MOUNTS = tuple((c, f"{ROOT}/{c}") for c in ("blkio", "cpu", "cpuacct", "freezer", "memory", "pids"))
V1 = CgroupLayout("v1", V1_MOUNTS, tuple(c for c, _ in V1_MOUNTS), swap_accounting=True)

# --- what a user may type, or write in a file --------------------------------------------------

digits = st.one_of(st.from_regex(r"\A[0-9]{1,30}\Z"), st.sampled_from(["9" * 400, "1" + "0" * 5000]))
number_text = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
    st.sampled_from(["", "-", "+"]), digits,
    st.one_of(st.just(""), st.from_regex(r"\A\.[0-9]{0,30}\Z")),
    st.one_of(st.just(""), st.builds(lambda e, n: f"{e}{n}", st.sampled_from(["e", "E", "e+", "e-"]),
                                     st.integers(-400, 400))))
unit = st.sampled_from(["", "k", "K", "M", "m", "G", "g", "T", "t", "P", "E", "Ki", "MiB", "kb", "B",
                        "x", " M", "M "])
size_text = st.builds(lambda ws, n, u: f"{ws}{n}{u}{ws}", st.sampled_from(["", " ", "\t"]), number_text, unit)
junk = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "max", "-1", "0", "nan", "NaN", "inf", "-inf", "infinity", "1_000",
                     "0x10", "1e308", "1e-308", "1e12", "64", "2", "2.0000001", "0.01", "0.009",
                     "1,5", "½", "١٢", "5\n", "\x005", "8388607T", "8388608T", "4194304", "4194305",
                     "9" * 5000, "9" * 5000 + "M", "1." + "5" * 5000 + "K", "-" + "9" * 5000,
                     "1e" + "9" * 5000, "8:0 riops=" + "9" * 5000]))
huge = st.sampled_from([S64, S64 + 1, U64, U64 + 1, 10**30, -(10**30), 10**5000, -(10**5000), 2**44,
                        PID_MAX_LIMIT + 1, U32 + 1])
numbers = st.one_of(st.integers(), huge, st.floats(allow_nan=True, allow_infinity=True))
adversarial = st.one_of(size_text, junk, numbers)


def near(low: int, high: int) -> st.SearchStrategy[object]:
    """Values about a valid range [low, high], as text or numbers, its edges included."""
    edges = st.sampled_from([low - 1, low, high, high + 1])
    ints = st.one_of(st.integers(low - 2, high + 2), edges)
    return st.one_of(ints, ints.map(str))


sizes = st.one_of(
    st.builds(lambda n, u: f"{n}{u}", st.integers(6, 4096), st.sampled_from(["M", "G", "T", "m", "MiB"])),
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 8), st.sampled_from(["M", "T", "E"])),
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 2**24), st.sampled_from(["", "K", "M", "G", "T", "k"])),
    st.builds(lambda n, f, u: f"{n}.{f}{u}", st.integers(0, 9999), st.integers(0, 999), st.sampled_from(["K", "M", "G"])),
    near(6 << 20, (1 << 63) - 1), st.integers(2**60, 2**66))
cpus = st.one_of(st.floats(0, 3).map(lambda f: f"{f:.3f}"), st.floats(0, 3), st.integers(0, 3),
                 st.sampled_from(["0.01", "0.009", "2", "2.0", "2.00001", "2e0", "1e-2", "5e-1", "64",
                                  "1e12", "1e308", "175921860", "175921861"]))
device = st.one_of(st.sampled_from(["8:0", "8:0", "254:0", "254:0", "8:1", "999:999", "7:0", "4096:0",
                                    "0:1048576"]),
                   st.builds(lambda a, b: f"{a}:{b}", digits, digits), junk)
io_key = st.sampled_from(["rbps", "wbps", "riops", "wiops", "rbps", "riops", "x", ""])
io_number = st.one_of(near(1, U32).map(str), sizes.map(str), st.integers(U32, U64 + 1).map(str))
io_pair = st.builds(lambda k, val: f"{k}={val}", io_key, st.one_of(io_number, io_number, size_text, junk))
io_text = st.builds(lambda dev, pairs, sep: sep.join([dev, *pairs]), device,
                    st.lists(io_pair, min_size=1, max_size=4), st.sampled_from([" ", ",", ", ", "  "]))
well_formed_io = st.builds(
    lambda dev, pairs: " ".join([dev, *(f"{k}={val}" for k, val in pairs.items())]),
    st.sampled_from(["8:0", "254:0", "8:1", "999:999"]),
    st.dictionaries(st.sampled_from(["rbps", "wbps", "riops", "wiops"]), io_number, min_size=1))
PLAUSIBLE = {
    "memory": sizes, "swap": sizes, "memlock": sizes, "cpus": cpus,
    "cpu_weight": near(1, 10_000), "pids": near(1, PID_MAX_LIMIT),
    "io": st.lists(st.one_of(well_formed_io, well_formed_io, io_text), min_size=1, max_size=2),
}
ADVERSARIAL = {field: adversarial for field in PLAUSIBLE} | {
    "io": st.lists(st.one_of(io_text, junk, numbers), max_size=3)}

FIELDS = ("memory", "swap", "cpus", "cpu_weight", "pids", "io", "memlock")
FIELD_OF = {flag: field for field, flag in FLAGS.items()}


# --- what the kernel takes ---------------------------------------------------------------------


def integer(text: str, low: int, high: int) -> bool:
    return re.fullmatch(r"-?[0-9]+", text) is not None and low <= int(text) <= high


def _io_v2(text: str) -> bool:
    dev, *pairs = text.split(" ")
    if dev not in DISKS or not pairs:
        return False
    for pair in pairs:
        key, _, val = pair.partition("=")
        high = U32 if key.endswith("iops") else U64
        if key not in ("rbps", "wbps", "riops", "wiops") or not integer(val, 1, high):
            return False
    return True


def accepted(name: str, text: str) -> bool:
    """Whether the kernel takes `text` written to the control file `name` (ranges and types as
    in Linux 6.x: mm/page_counter.c, kernel/sched/core.c, kernel/cgroup/pids.c,
    block/blk-throttle.c)."""
    words = text.split(" ")
    if name in ("memory.max", "memory.high", "memory.swap.max"):
        return text == "max" or integer(text, 0, U64)
    if name == "memory.oom.group":
        return text in ("0", "1")
    if name == "cpu.max":
        quota, period = words
        return integer(period, 1000, 1_000_000) and (quota == "max" or integer(quota, 1000, MAX_CFS_QUOTA_US))
    if name == "cpu.weight":
        return integer(text, 1, 10_000)
    if name == "pids.max":
        return text == "max" or integer(text, 0, PID_MAX_LIMIT)
    if name == "io.max":
        return _io_v2(text)
    if name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes"):
        return text == "-1" or integer(text, 0, S64)
    if name == "cpu.cfs_period_us":
        return integer(text, 1000, 1_000_000)
    if name == "cpu.cfs_quota_us":
        return text == "-1" or integer(text, 1000, MAX_CFS_QUOTA_US)
    if name == "cpu.shares":
        return integer(text, 2, 262_144)
    if name.startswith("blkio.throttle."):
        return len(words) == 2 and words[0] in DISKS and integer(
            words[1], 1, U32 if name.endswith("iops_device") else U64)
    raise AssertionError(f"a write to {name} that this test does not know")


def assert_kernel_takes(p: CgroupPlan, limits: Limits) -> None:
    written: dict[str, str] = {}
    for path, text, _optional in p.limits.writes:
        name = path.rsplit("/", 1)[1]
        assert accepted(name, text), f"the kernel refuses {text!r} for {name}"
        written.setdefault(name, text)
    if "memory.memsw.limit_in_bytes" in written and written["memory.limit_in_bytes"] != "-1":
        assert int(written["memory.memsw.limit_in_bytes"]) >= int(written["memory.limit_in_bytes"])
    quota = written.get("cpu.cfs_quota_us") or written["cpu.max"].split(" ")[0]
    if quota not in ("max", "-1"):
        assert int(quota) <= HOST_CPUS * 100_000  # within the host
    assert 1 <= limits.nproc <= PID_MAX_LIMIT and 1 <= limits.nofile < 1 << 31
    assert 0 <= limits.memlock <= U64  # RLIMIT_MEMLOCK: an rlim_t


def assert_names_flag_and_value(e: InvalidInput, given: dict[str, object], planned: Limits | None) -> None:
    flag = e.message.split(" ", 1)[0]
    assert flag in FIELD_OF, f"no flag named: {e.message}"
    field = FIELD_OF[flag]
    assert field in given, f"{e.message}: names {flag}, which was not given ({given})"
    raw = given[field]
    if planned is None:  # refused by validation: the value as given
        shown = [show(item) for item in raw] if field == "io" else [show(raw)]  # type: ignore[attr-defined]
    elif field == "io":  # refused by the plan: the device the host lacks or cannot limit
        shown = [io.device for io in planned.io]
    elif field == "cpus":
        shown = [f"{planned.cpus:.15g}"]
    else:
        shown = [str(getattr(planned, field))]
    assert any(s in e.message for s in shown), f"{e.message!r} names none of {shown}"


@st.composite
def limit_values(draw, adversarial: bool = True) -> dict[str, object]:
    """A few of the flags (the others left at their defaults), each with a generated value:
    near the valid range, or (with ``adversarial``) anything."""
    fields = draw(st.sets(st.sampled_from(FIELDS), max_size=4))
    if "swap" in fields and draw(st.booleans()):
        fields.add("memory")  # --swap needs --memory
    return {field: draw(st.one_of(PLAUSIBLE[field], PLAUSIBLE[field], ADVERSARIAL[field])
                        if adversarial else PLAUSIBLE[field])
            for field in sorted(fields)}


@settings(max_examples=1500, deadline=None)
@given(limit_values())
def test_a_limit_value_is_refused_by_name_or_planned_as_the_kernel_takes_it(given):
    check(given)


@settings(max_examples=1000, deadline=None)
@given(limit_values(adversarial=False))
def test_values_about_the_valid_ranges_are_refused_by_name_or_planned_as_the_kernel_takes_them(given):
    check(given)


def check(given: dict[str, object]) -> None:
    try:
        limits = validate_limits(**given)  # type: ignore[arg-type]
    except InvalidInput as e:
        event(f"refused by validation: {e.message.split(' ', 1)[0]}")
        assert_names_flag_and_value(e, given, None)
        return
    for layout in (V1, V2):
        try:
            p = plan(layout, "nucleus", "c1", limits, cpus=HOST_CPUS, devices=DEVICES)
        except InvalidInput as e:
            event(f"refused by the plan: {e.message.split(' ', 1)[0]}")
            assert_names_flag_and_value(e, given, limits)
            continue
        event(f"planned, with {len(given)} flags")
        assert_kernel_takes(p, limits)


def test_the_repros_of_the_issue():
    """--cpus 1e308 was an OverflowError, 1e12 and 64 (on 2 CPUs) reached the kernel, and a
    device that does not exist dropped every limit at run time."""
    for cpus, message in (("1e308", "--cpus '1e308': too large"), ("1e12", "--cpus '1e12': too large")):
        try:
            validate_limits(cpus=cpus)
        except InvalidInput as e:
            assert e.message == message
            assert e.hint == ("the kernel's largest CPU quota is 175921860 CPUs; give at most the "
                              "number of CPUs of the host")
        else:
            raise AssertionError(f"--cpus {cpus} was accepted")
    for layout in (V1, V2):
        try:
            plan(layout, "nucleus", "c1", validate_limits(cpus="64"), cpus=HOST_CPUS, devices=DEVICES)
        except InvalidInput as e:
            assert (e.message, e.hint) == (
                "--cpus '64': more than the 2 CPUs of this host",
                "give at most 2 (the CPUs nucleus may run on here: its affinity and cpuset)")
        else:
            raise AssertionError("--cpus 64 was planned on a 2-CPU host")
        try:
            plan(layout, "nucleus", "c1", validate_limits(memory="64M", pids=20, io=["999:999 rbps=1M"]),
                 cpus=HOST_CPUS, devices=DEVICES)
        except InvalidInput as e:
            assert (e.message, e.hint) == (
                "--io-limit '999:999 rbps=1048576': this host has no block device 999:999",
                "this host's disks are 8:0, 254:0 (lsblk -o NAME,MAJ:MIN lists them)")
        else:
            raise AssertionError("an --io-limit for a missing device was planned")
