"""`nucleus compose up` names a service's container `<topology>-<service>`: a name another
topology's container (or a plain `nucleus run --name`) holds is refused before anything starts,
naming who holds it (nucleus.app.compose.name_taken)."""

from __future__ import annotations

from nucleus.app.compose import SERVICE_LABEL, TOPOLOGY_LABEL, name_taken
from nucleus.config import topology


def _topology(name: str, *services: str) -> topology.Topology:
    body = "".join(f'[services.{s}]\nrootfs = "/nix/store/x"\ncommand = ["true"]\n' for s in services)
    return topology.parse(f'name = "{name}"\n{body}')


def _record(name: str, topo: str | None = None, service: str | None = None) -> dict[str, object]:
    labels = {} if topo is None else {TOPOLOGY_LABEL: topo, SERVICE_LABEL: service}
    return {"id": "0123456789abcdef" * 2, "name": name, "labels": labels}


def test_two_topologies_that_would_share_a_container_name_are_told_apart():
    # Topology 'a-b' with service 'c', and topology 'a' with service 'b-c': both 'a-b-c'.
    first, second = _topology("a-b", "c"), _topology("a", "b-c")
    assert first.container("c") == second.container("b-c") == "a-b-c"
    problem = name_taken(second, [_record("a-b-c", "a-b", "c")])
    assert problem is not None
    assert problem.message == ("compose up 'a': service 'b-c' would be the container 'a-b-c', which is "
                               "service 'c' of topology 'a-b' (0123456789ab)")
    assert problem.exit_code == 125


def test_a_name_taken_by_a_plain_run_is_refused_too():
    problem = name_taken(_topology("app", "web"), [_record("app-web")])
    assert problem is not None and "a container not started by compose" in problem.message


def test_the_topology_s_own_containers_and_other_names_pass():
    records = [_record("a-b-c", "a-b", "c"), _record("a-b-d", "a", "b-d"), _record("other")]
    assert name_taken(_topology("a", "b-d", "e"), records) is None
