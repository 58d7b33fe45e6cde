"""`stockade check`: the real iptables-restore, ipset and nft judge the compiled policy, in a throwaway netns."""
from __future__ import annotations

import shutil

from ..policy.compile import CompiledPolicy
from ..policy.output import render_outputs
from .netns import Netns, NetnsError


def check_with_tools(c: CompiledPolicy) -> list[str]:
    """Problems the real tools report (empty if they accept everything); nothing outside the namespace changes."""
    ipt = render_outputs(c, "iptables")
    problems = []
    with Netns() as ns:
        steps = [(["ipset", "restore"], ipt["ipsets"]),
                 (["iptables-restore", "--test"], ipt["rules.v4"]),
                 (["ip6tables-restore", "--test"], ipt["rules.v6"])]
        if shutil.which("nft"):
            steps.append((["nft", "-c", "-f", "-"], render_outputs(c, "nftables")["ruleset.nft"]))
        for argv, text in steps:
            try:
                ns.run(argv, input=text)
            except NetnsError as e:
                problems.append(f"{' '.join(argv)}: {(e.stderr or '').strip()}")
    return problems
