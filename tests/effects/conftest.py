"""Fixtures of the cgroup tests: a fake kernel installed as ``cgroups.FILES`` (so the probe and
the effects see it), and hosts built on it (see tests/effects/cgroup_env.py)."""

from __future__ import annotations

import pytest

from nucleus.effects import cgroups
from tests.effects.cgroup_env import Env, build_hybrid, build_v2
from tests.effects.fake_cgroupfs import FakeKernel


@pytest.fixture
def kernel(monkeypatch) -> FakeKernel:
    fake = FakeKernel()
    monkeypatch.setattr(cgroups, "FILES", fake)
    return fake


@pytest.fixture(params=["v2", "v1"])
def env(request, kernel, tmp_path) -> Env:
    """A pure cgroup v2 host, then this machine's v1/v2 hybrid."""
    return build_v2(kernel, tmp_path) if request.param == "v2" else build_hybrid(kernel, tmp_path)


@pytest.fixture
def v2(kernel, tmp_path) -> Env:
    return build_v2(kernel, tmp_path)


@pytest.fixture
def v1(kernel, tmp_path) -> Env:
    return build_hybrid(kernel, tmp_path)
