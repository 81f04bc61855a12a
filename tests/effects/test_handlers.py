"""One table maps every intent to the function that carries it out."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.effects.handlers import HANDLERS, SERVING_LOOP, child_handler, handler_for


@pytest.mark.parametrize("name", sorted(v.INTENTS))
def test_every_intent_is_carried_out_by_exactly_one_party(name):
    cls = v.INTENTS[name]
    intent = cls()
    served = isinstance(intent, SERVING_LOOP)
    if served:
        assert cls.where == "child"
        return
    handler = handler_for(intent)
    if cls.where == "child":
        assert child_handler(intent) is handler


def test_the_join_intents_use_the_runs_handlers():
    assert handler_for(v.JoinDropCapabilities()) is HANDLERS[v.DropCapabilities]
    assert handler_for(v.JoinLoadSeccomp()) is HANDLERS[v.LoadSeccomp]
    assert handler_for(v.JoinCgroup()) is HANDLERS[v.AttachCgroup]
    assert isinstance(v.JoinFork(), SERVING_LOOP)


def test_a_host_intent_is_never_carried_out_inside():
    with pytest.raises(LookupError, match="carried out by the supervisor"):
        child_handler(v.CreateCgroup())


def test_the_table_names_only_intents():
    assert set(HANDLERS) <= set(v.INTENTS.values())
