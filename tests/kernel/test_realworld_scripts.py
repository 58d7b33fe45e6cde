"""Script differential on real firewall scripts, the seeds and the demo script (issue 12).

Each case of tests/realworld/scripts.toml runs with real bash in a sandboxed namespace
(tests/realworld/scriptrun.py); the kernel's iptables-save, ip6tables-save and ipset save
afterwards are compared with `stockade parse` of the same script, comments and counters aside.

A case measured identical must stay identical. Any other case is a known failure (strict xfail
whose reason is the first difference and what stockade said): when stockade gets it right, the
test fails until the manifest says "identical". A case recorded as refused must not quietly
become wrong: while it differs, stockade must keep naming a line with an error.

The collected scripts are third-party code, kept out of this repository: they are read from
$STOCKADE_REALWORLD_SCRIPTS (default ../shared/corpus/realworld-scripts); SOURCES.md says where
each one comes from. Without them the store's cases skip, or fail under CI=true.
"""
from __future__ import annotations

import pytest

from ..realworld.scriptrun import STORE, Case, cases, differential, stockade_options
from .conftest import CI


class NotIdentical(AssertionError):
    """stockade's reading differs from what bash made of the script: the way a known failure fails."""


def _param(case: Case):
    marks = []
    if case.expect != "identical":
        marks.append(pytest.mark.xfail(raises=NotIdentical, strict=True,
                                       reason=f"{case.expect}: {case.reason}"))
    return pytest.param(case, id=case.name, marks=marks)


CASES = cases()


@pytest.fixture(scope="module")
def options(kernel_ok) -> set[str]:
    return stockade_options()


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_script_reads_as_bash_runs_it(case: Case, options):
    if not case.source.exists():
        message = f"{case.source} is missing: set STOCKADE_REALWORLD_SCRIPTS to the script store (see SOURCES.md)"
        if CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    d = differential(case, options)
    print(f"\n{case.name}: {d.summary()}")
    assert not d.kernel.timed_out, f"bash did not finish within {case.timeout} s"
    if case.expect == "refused" and d.outcome == "differs":
        raise AssertionError(f"stockade no longer reports an error, yet still differs: {d.summary()}")
    if d.outcome != "identical":
        raise NotIdentical(d.summary())


def test_the_manifest_covers_at_least_30_real_scripts():
    store = [c for c in CASES if c.source.is_relative_to(STORE)]
    assert len(store) >= 30 and len({c.name for c in CASES}) == len(CASES)
    assert {c.source.name for c in CASES} >= {"demo-firewall.sh"} and sum(c.pasted for c in CASES) == 5
