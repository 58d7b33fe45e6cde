"""The corpus dumps through the real kernel: stockade renders what iptables-save 1.8 prints.

Each net-network dump is loaded with iptables-restore into a throwaway namespace
and read back with iptables-save; stockade's rendering of the same text must
match it rule for rule. This checks test_corpus's NORMALISATIONS against the
real tool and holds the hand-written files to exact output too.
"""
from __future__ import annotations

import re

import pytest

from stockade.model import Family
from stockade.parse.save import guess_family
from stockade.render.save import render_save

from ..test_corpus import (
    DUMPS,
    EXPECTED_ERRORS,
    dump_text,
    parse,
    rewrite_text,
    rewrites,
    rule_lines,
)

pytestmark = pytest.mark.kernel


def restore_input(rel: str) -> str:
    """The dump as both sides read it.

    Old forms iptables 1.8 refuses are rewritten as test_corpus does; lines the
    .t files say iptables refuses (EXPECTED_ERRORS; 1.8.9 still took them) are
    left out; white space at line ends and blank lines are dropped because
    iptables-restore 1.8.9 refuses `COMMIT ` and space-only lines (stockade
    accepts both).
    """
    text = dump_text(rel)
    family = guess_family(text)
    text = rewrite_text(text, family, [r for r in rewrites(rel) if r.input])
    keep = [ln.rstrip() for ln in text.splitlines()
            if ln.strip() and not any(re.search(e.pattern, ln.rstrip()) for e in EXPECTED_ERRORS)]
    return "\n".join(keep) + "\n"


@pytest.mark.parametrize("rel", DUMPS)
def test_dump_through_kernel(rel, netns):
    text = restore_input(rel)
    family = guess_family(text)
    cmd = "iptables" if family is Family.IPV4 else "ip6tables"
    for name in sorted(set(re.findall(r"--match-set (\S+)", text))):
        netns.run(["ipset", "create", name, "hash:net", "family", "inet" if family is Family.IPV4 else "inet6"])
    netns.run([f"{cmd}-restore"], input=text)
    kernel = rule_lines(netns.run([f"{cmd}-save"]).stdout)

    _, b, rs = parse(rel, text)
    errors = [str(d) for d in b.diagnostics if d.severity == "error"]
    assert not errors, f"{rel}: iptables-restore took it, stockade did not:\n" + "\n".join(errors[:20])
    ours = rule_lines(render_save(rs))
    diffs = []
    for key in sorted(set(kernel) | set(ours)):
        want = [ln for _, ln in kernel.get(key, [])]
        got = [ln for _, ln in ours.get(key, [])]
        if want != got:
            diffs += [f"*{key[0]} {key[1]}:"] + [f"  kernel:   {w}\n  stockade: {g}" for w, g in zip(want, got)
                                                if w != g][:10]
            if len(want) != len(got):
                diffs.append(f"  kernel printed {len(want)} rules, stockade {len(got)}")
    assert not diffs, f"{rel}: stockade differs from iptables-save 1.8.9:\n" + "\n".join(diffs[:40])
