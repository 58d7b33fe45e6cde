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
from tests.test_policy_cost import check_target, costs, target_cases


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
