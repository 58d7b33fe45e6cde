"""Kernel tests: real netfilter in throwaway network namespaces (stockade.kernel.netns.Netns).

Every test here is marked `kernel`. Where namespaces, iptables or ipset cannot be
used, the tests skip on a developer machine but FAIL under CI=true: CI must never
pass by running none of them. After each test, no namespace this process created
may be left behind.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

from stockade.kernel.netns import Netns, namespaces, process_prefix, remove, unavailable
from stockade.lab.differential import Probe

CI = os.environ.get("CI") == "true"
PROBES = (["iptables-save"], ["ip6tables-save"], ["iptables-restore", "--version"],
          ["ip6tables-restore", "--version"], ["ipset", "list"])


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(scope="session")
def kernel_ok() -> None:
    """Skip (or, under CI=true, fail) when the kernel tests cannot run here."""
    reason = unavailable(PROBES)
    if reason:
        if CI:
            pytest.fail(f"kernel tests cannot run: {reason}", pytrace=False)
        pytest.skip(f"kernel tests cannot run: {reason}")


@pytest.fixture
def netns(kernel_ok):
    """A fresh namespace for one test, deleted (with anything running in it) afterwards."""
    with Netns() as ns:
        yield ns


LASTING: set[str] = set()  # namespaces of a module-wide probe, which outlive single tests


@contextmanager
def lasting_probe(forward: bool):
    """A differential Probe shared by a module's tests; its namespaces must be gone once it closes."""
    with Probe(forward=forward) as p:
        t = p.topology
        names = {ns.name for ns in (t.client, t.server, getattr(t, "far", None)) if ns is not None}
        LASTING.update(names)
        yield p
    LASTING.difference_update(names)
    left = [n for n in namespaces(process_prefix()) if n in names]
    assert not left, f"the probe left namespaces behind: {left}"


@pytest.fixture(autouse=True)
def no_namespace_left():
    yield
    left = [n for n in namespaces(process_prefix()) if n not in LASTING]
    if left:
        for name in left:  # so that one leak does not fail every later test too
            remove(name)
        pytest.fail(f"namespaces left behind: {', '.join(left)}", pytrace=False)
