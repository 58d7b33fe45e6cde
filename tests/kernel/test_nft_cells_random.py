"""The cells of random nft rulesets (tests/kernel/nftgen.py: several tables on a hook, sets, maps, verdict maps,
concatenations, ct state, TCP flags, interface wildcards, limits) are exact: random packets drawn from every
class get the class's verdict from the simulator (UNKNOWN included: a test the cells do not cut, e.g. a mark, reads a
field the samples leave at its default, so it too must answer alike). The rulesets are read through the
real nft."""
from __future__ import annotations

import os
import random

from stockade.kernel.nftfile import NftFileError, nft_json_of_file
from stockade.model import Family
from stockade.parse.nft import read_nft_json
from stockade.semantics.diff import packet_spec, semantic_diff
from stockade.semantics.nft import NftSimulator
from tests.test_nft_cells import sample

from .nftgen import NftGen

# 12 rulesets (11 loaded; the classes without residual tests alone: 26,432, 52,864 packets, 0 disagreements) took 9.5 minutes on a loaded
# 2-core machine; CI runs 4 unless told more.
RULESETS = int(os.environ.get("STOCKADE_NFT_CELL_RULESETS", "4"))


def test_random_packets_of_every_class_get_its_verdict(tmp_path, kernel_ok):
    rng = random.Random(2026)
    checked, classes, loaded, wrong = 0, 0, 0, []
    for n in range(RULESETS):
        fam = Family.IPV4 if n % 2 == 0 else Family.IPV6
        gen = NftGen(random.Random(700 + n), fam).ruleset()
        path = tmp_path / f"r{n}.nft"
        path.write_text(gen.text)
        try:
            nft = read_nft_json(nft_json_of_file(str(path)), str(path), positions=False)
        except NftFileError:  # the generator's rare rule nft refuses (e.g. two transport protocols)
            continue
        loaded += 1
        d = semantic_diff(nft, {}, keep=True, hooks=("INPUT", "FORWARD"))
        sim = NftSimulator(nft)
        for c in d.changes + d.unchanged:
            if c.family is not fam:
                continue
            classes += 1
            for _ in range(2):
                pkt = sample(c.space, rng.choice(c.parts), c.hook, rng)  # an exact class, not a merged hull
                sim.memory.clear()
                got = sim.run(pkt).verdict
                checked += 1
                if got != c.old.verdict:
                    wrong.append(f"r{n} {c.hook} {c.state}: {c.text()}: class {c.old.verdict}, packet {packet_spec(pkt)} "
                                 f"{got}")
    print(f"{loaded} random nft rulesets: {classes} classes, {checked} packets")
    assert not wrong, "\n".join(wrong[:20])
    assert loaded >= RULESETS * 2 // 3 and checked > 300 * loaded

