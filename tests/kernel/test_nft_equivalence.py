"""Equivalence across input kinds, proved by `stockade diff` (semantics/diff.py cross_diff) with nft files read
through the real nft: an iptables dump and iptables-restore-translate's rewrite of it (a migration), and a
stockade policy and its own nftables output, for every example and 30 random policies."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from stockade.commands.inputs import load, load_nft
from stockade.kernel.netns import Netns
from stockade.model import Family
from stockade.policy.output import write_outputs
from stockade.render.save import render_save
from stockade.semantics.diff import semantic_diff
from tests.corpus import NET_NETWORK, SEEDS
from tests.test_policy_equivalence import compile_gen, example_policies, random_policy

# Dumps iptables-restore-translate rewrites whole (no rule left as a comment) and nft 1.0.6 loads.
DUMPS = ["config_home_router/iptables-save", "config_random_srv/iptables-save",
         "configs_tails_os/2015-aug-tails-i386-1.4.1-iptables-save", "configs_serverfault/758088.txt"]
SEED_PREFIXES = ("002", "003", "004")  # 000 uses -m recent, which the translator leaves as a comment
POLICIES = int(os.environ.get("STOCKADE_NFT_POLICIES", "30"))


def translate(dumps: dict[Family, str], where: Path) -> Path:
    """iptables-restore-translate's nft text for each family's dump, in one file."""
    parts = []
    with Netns(lo_up=False) as ns:
        for fam, text in dumps.items():
            path = where / f"rules.v{int(fam)}"
            path.write_text(text)
            tool = "iptables-restore-translate" if fam is Family.IPV4 else "ip6tables-restore-translate"
            out = ns.run([tool, "-f", str(path)]).stdout
            assert "\n# -t " not in out, f"{path}: the translator left a rule untranslated"
            parts.append(out)
    nft = where / "rules.nft"
    nft.write_text("\n".join(parts))
    return nft


def _dump_cases() -> list:
    out = [pytest.param(NET_NETWORK / d, id=d.split("/")[0]) for d in DUMPS]
    return out


@pytest.mark.parametrize("path", _dump_cases())
def test_a_translated_dump_is_equal(path: Path, tmp_path, kernel_ok):
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/corpus)")
    old = load(str(path), whole=True).builder.loaded()  # as the kernel holds it (what the translator read)
    new = load_nft(str(translate({f: render_save(rs) for f, rs in old.items()}, tmp_path)))
    d = semantic_diff(old, new)
    assert d.changes == [], d.text()
    assert d.classes > 20


@pytest.mark.parametrize("prefix", SEED_PREFIXES)
def test_a_translated_seed_is_equal(prefix: str, tmp_path, kernel_ok):
    found = list(SEEDS.glob(f"{prefix}_*.txt"))
    if not found:
        pytest.skip(f"seed {prefix} is not here (../shared/seeds)")
    old = load(str(found[0]), whole=True).builder.loaded()
    new = load_nft(str(translate({f: render_save(rs) for f, rs in old.items()}, tmp_path)))
    d = semantic_diff(old, new)
    assert d.changes == [], d.text()


def test_the_translator_losing_a_protocol_is_found(tmp_path, kernel_ok):
    """iptables-restore-translate 1.8.9 writes `-p udp -m udp -j REJECT` as a bare `reject`: seed 001's
    migration rejects what the script let through, and the diff lists exactly those classes."""
    found = list(SEEDS.glob("001_*.txt"))
    if not found:
        pytest.skip("seed 001 is not here (../shared/seeds)")
    old = load(str(found[0]), whole=True).builder.loaded()
    new_path = translate({f: render_save(rs) for f, rs in old.items()}, tmp_path)
    assert "udp dport" not in new_path.read_text() and "counter reject\n" in new_path.read_text()
    d = semantic_diff(old, load_nft(str(new_path)))
    assert d.changes and all((c.old.verdict, c.new.verdict) == ("ACCEPT", "REJECT") for c in d.changes), d.text()
    texts = {c.text() for c in d.changes}
    assert "any protocol but icmp,tcp,udp from anywhere" in texts and "tcp/all but 22 from anywhere" in texts
    assert not any(t.startswith("udp") for t in texts)  # udp was rejected before, and still is


def test_a_changed_translation_lists_the_classes(tmp_path, kernel_ok):
    path = NET_NETWORK / DUMPS[0]
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/corpus)")
    old = load(str(path), whole=True).builder.loaded()  # as the kernel holds it (what the translator read)
    nft = translate({Family.IPV4: render_save(old[Family.IPV4])}, tmp_path)
    text = nft.read_text()
    assert text.count("tcp dport 22 ") == 1
    nft.write_text(text.replace("tcp dport 22 ", "tcp dport 2222 "))
    d = semantic_diff(old, load_nft(str(nft)))
    got = {(c.hook, c.text(), c.old.verdict, c.new.verdict) for c in d.changes}
    assert got == {("INPUT", "tcp/22 from anywhere on other interfaces", "ACCEPT", "REJECT"),
                   ("INPUT", "tcp/2222 from anywhere on other interfaces", "REJECT", "ACCEPT")}, d.text()
    assert all(c.state.startswith("NEW") for c in d.changes)


def _policies() -> list:
    gens = example_policies() + [random_policy(random.Random(9000 + i), f"random{i}") for i in range(POLICIES)]
    return [pytest.param(gp, id=gp.name) for gp in gens]


@pytest.mark.parametrize("gp", _policies())
def test_stockade_nft_output_is_its_policy(gp, tmp_path, kernel_ok):
    compiled = compile_gen(gp, tmp_path)
    written = write_outputs(compiled, "nftables", tmp_path / "out")
    nft = load_nft(str(next(p for p in written if p.suffix == ".nft")))
    d = semantic_diff(compiled.rulesets, nft)
    assert d.changes == [], d.text()
    assert d.classes > 100
