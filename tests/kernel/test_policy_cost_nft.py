"""Rules evaluated per packet (issue 15 item 7) for the nftables rendering of every example: the table
`render_nft` writes, loaded by the real nft in a throwaway namespace and listed back, each packet run by
the nft simulator (semantics/nft.py, held against the kernel's counters by test_nft_differential).
The packets, limits and known figures are tests/test_policy_cost.py's."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

from stockade.kernel.nftfile import nft_json_of_file
from stockade.parse.nft import read_nft_json
from stockade.render.nft import render_nft
from stockade.semantics.nft import NftSimulator
from tests.test_policy_cost import check_target, costs, target_cases, with_blocklist, with_services, worst


def nft_runner(tmp: Path):
    def runner(cp):
        path = tmp / "stockade.nft"
        path.write_text(render_nft(cp.rulesets))
        return NftSimulator(read_nft_json(nft_json_of_file(str(path)), str(path), positions=False)).run
    return runner


@functools.cache
def measured(path: Path, tmp: Path) -> dict:
    got = costs(path, nft_runner(tmp))
    for kind, verdict in (("established", "ACCEPT"), ("new allowed", "ACCEPT"), ("blocked source", "DROP")):
        assert all(v == verdict for _, _, v in got[kind]), (kind, got[kind])
    return got


@pytest.mark.parametrize(("path", "kind", "known"), target_cases("nftables"))
def test_issue_targets_nft(kernel_ok, tmp_path_factory, path, kind, known):
    check_target(measured(path, tmp_path_factory.getbasetemp()), path, kind, known)


def test_nft_cost_does_not_depend_on_service_count_or_blocklist_size(kernel_ok, tmp_path):
    """nft: the ports of one allow line are one set, whatever their number (here 1 and 20: iptables needs two multiport rules for 20); a blocklist is a
    set lookup whatever its size (3 and 20,000 entries)."""
    run = nft_runner(tmp_path)
    assert worst(costs(with_services(tmp_path, 1), run)) == worst(costs(with_services(tmp_path, 20), run))
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    a, b = costs(with_blocklist(small, 3), run), costs(with_blocklist(large, 20_000), run)
    assert a["blocked source"] and worst(a) == worst(b)
