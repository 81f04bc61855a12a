"""Namespaces a config.json names by path, as a pod's containers name their sandbox's: read into
the container configuration (nucleus.config.oci), planned as joins at the isolation machine's
"unshare" step in place of new namespaces (nucleus.plan.run, nucleus.machines.isolation), and
checked by the effect before any is joined (nucleus.effects.namespaces): the path must be a
namespace file of its type, and not the host's own unless the runtime's operator allows it."""

from __future__ import annotations

import os

import pytest

from nucleus import vocab as v
from nucleus.config import oci
from nucleus.effects import namespaces
from nucleus.machines import isolation
from nucleus.plan.run import Artifacts, plan
from tests.unit.test_machine_isolation import iso_drive
from tests.unit.test_oci_config import load, refused
from tests.unit.test_plan_run import facts

SANDBOX = "/proc/4242/ns"
FIELD = "config.json: linux.namespaces[{}].path"


def joining(**paths: str):
    """A change of the config that names `paths` ({OCI type: path}) for those namespaces."""
    def change(data):
        data["linux"]["namespaces"] = [{"type": t, **({"path": paths[t]} if t in paths else {})}
                                       for t in ("pid", "network", "ipc", "uts", "mount")]
    return change


POD = joining(network="/var/run/netns/cni-1234", ipc=f"{SANDBOX}/ipc", uts=f"{SANDBOX}/uts")


def test_a_pods_namespaces_are_joined_by_path_not_made():
    bundle = load(POD)
    assert bundle.config.namespace_paths == (
        ("net", "/var/run/netns/cni-1234", FIELD.format(1)),
        ("ipc", f"{SANDBOX}/ipc", FIELD.format(2)),
        ("uts", f"{SANDBOX}/uts", FIELD.format(3)),
    )
    # the network is not the host's: the sandbox's, which nucleus neither makes nor tears down
    assert (bundle.config.network, bundle.config.allow_host_network) == ("none", False)
    assert bundle.config.join_host_namespaces is False


def test_the_hostname_of_a_joined_uts_namespace_is_its_makers():
    bundle = load(POD)
    assert bundle.config.hostname is None
    assert "hostname 'runc' is not set: the container joins a uts namespace, whose hostname its maker sets" \
        in bundle.warnings


@pytest.mark.parametrize("kind, index, why", [
    ("mount", 4, "a mount namespace is not joined by nucleus: nucleus builds the container's root"),
    ("user", 5, "a user namespace is not joined by nucleus: nucleus gives each container a user namespace"),
    ("cgroup", 5, "a cgroup namespace is not joined by nucleus"),
    ("time", 5, "a time namespace is not joined by nucleus"),
])
def test_namespaces_nucleus_makes_itself_are_refused_by_path(kind, index, why):
    path = f"{SANDBOX}/{'mnt' if kind == 'mount' else kind}"

    def change(data):
        listed = data["linux"]["namespaces"]
        listed[index:] = [{"type": kind, "path": path}]
    assert refused(change).startswith(f"{FIELD.format(index)} {path!r}: {why}")


@pytest.mark.parametrize("path, why", [
    ("ns/net", "must be an absolute path"),
    (["/proc/1/ns/net"], "must be a string"),
    (7, "must be a string"),
])
def test_a_path_that_is_not_absolute_is_refused(path, why):
    def change(data):
        data["linux"]["namespaces"][1] = {"type": "network", "path": path}
    assert refused(change) == f"{FIELD.format(1)} {path!r}: {why}"


def test_an_empty_path_is_none_as_runc_reads_it():
    assert load(joining(network="")).config.namespace_paths == ()


def test_a_namespace_given_twice_is_refused():
    def change(data):
        data["linux"]["namespaces"].append({"type": "network", "path": f"{SANDBOX}/net"})
    assert refused(change) == "config.json: linux.namespaces[5].type 'network': is given twice"


def test_network_sysctls_are_refused_in_a_joined_network_namespace():
    def change(data):
        POD(data)
        data["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    assert "is not allowed in the host's network namespace" in refused(change)
    assert load(lambda d: d["linux"].update(sysctl={"net.ipv4.ip_forward": "1"})).config.sysctls


def test_only_the_runtimes_operator_lets_a_path_be_the_hosts():
    bundle = load(POD, runtime=oci.Runtime(degraded=True))
    assert bundle.config.join_host_namespaces is True
    assert "linux.namespaces: a path may name the host's own namespace (--allow-degraded-security)" \
        in bundle.warnings


def test_the_plan_joins_in_place_of_making_the_joined_kinds():
    config = load(joining(network=f"{SANDBOX}/net", pid=f"{SANDBOX}/pid", uts=f"{SANDBOX}/uts")).config
    iso = plan(config, facts(0, 0), Artifacts(), "c1").state.iso
    assert iso.namespaces == ("mount", "ipc")
    # in the order attach joins a container's: uts, net, then pid (whose join is for the init
    # forked next)
    assert [kind for kind, _path, _field in iso.joins] == ["uts", "net", "pid"]
    assert iso.hostname == ""  # the joined uts namespace's own is kept
    assert iso.join_host is False
    # exec into the container joins what its init is in, joined or made
    assert plan(config, facts(0, 0), Artifacts(), "c1").join.namespaces == (
        "user", "ipc", "uts", "net", "pid", "mnt")


def test_the_unshare_step_carries_the_joins_and_nothing_else_changes():
    joins = (("net", f"{SANDBOX}/net", FIELD.format(1)),)
    end, intents, waits = iso_drive(isolation.initial(namespaces=("pid", "mount", "uts", "ipc", "cgroup"),
                                                      joins=joins, hostname=""))
    _, plain, plain_waits = iso_drive(isolation.initial())
    assert v.Unshare(("pid", "mount", "uts", "ipc", "cgroup"), joins, False) in intents
    assert [type(op) for op in intents] == [type(op) for op in plain] and waits == plain_waits
    assert v.SetHostname("") in intents
    assert isolation.to_tla(end) == isolation.to_tla(iso_drive(isolation.initial())[0])


def test_a_namespace_file_of_the_named_kind_is_opened_for_setns():
    fd = namespaces.namespace_file("net", "/proc/self/ns/net", FIELD.format(1), host=True)
    try:
        assert os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind, path, said", [
    ("net", "/proc/self/ns/ipc", "is a CLONE_NEWIPC namespace, not a net namespace (CLONE_NEWNET)"),
    ("net", "/etc/hostname", "is not a namespace file"),
    ("net", "/dev/null", "is not a namespace file"),
    ("uts", "/nonexistent/uts", "cannot be opened"),
    ("net", "/proc/self/ns/net", "is the host's own net namespace: refusing to join it"),
])
def test_a_path_that_is_not_a_namespace_of_its_kind_or_is_the_hosts_is_refused(kind, path, said):
    with pytest.raises(OSError) as caught:
        namespaces.namespace_file(kind, path, FIELD.format(1), host=False)
    assert str(caught.value.strerror).startswith(f"{FIELD.format(1)} {path!r}: {said}")
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        namespaces.namespace_file(kind, path, FIELD.format(1), host=False)
    assert set(os.listdir("/proc/self/fd")) <= before  # nothing left open


def test_join_opens_and_checks_every_path_before_it_joins_any(monkeypatch):
    joined: list[int] = []
    monkeypatch.setattr(namespaces.libc, "setns", lambda fd, nstype: joined.append(nstype))
    with pytest.raises(OSError):
        namespaces.join((("uts", "/proc/self/ns/uts", "a"), ("net", "/etc/hostname", "b")), host=True)
    assert joined == []
    namespaces.join((("uts", "/proc/self/ns/uts", "a"), ("net", "/proc/self/ns/net", "b")), host=True)
    assert joined == [namespaces.FLAGS["uts"], namespaces.FLAGS["net"]]
