"""Writing a compiled policy where `stockade compile --out DIR` puts it."""
from __future__ import annotations

from pathlib import Path

from ..files import write_files
from ..model import Family
from ..render.ipset import render_ipsets
from ..render.save import render_save
from .compile import CompiledPolicy


def render_outputs(c: CompiledPolicy, target: str) -> dict[str, str]:
    """File name -> content for one back end."""
    if target == "nftables":
        from ..render.nft import render_nft

        return {"ruleset.nft": render_nft(c.rulesets)}
    return {"rules.v4": render_save(c.rulesets[Family.IPV4]), "rules.v6": render_save(c.rulesets[Family.IPV6]),
            "ipsets": render_ipsets([c.rulesets[Family.IPV4], c.rulesets[Family.IPV6]])}


MARK = "# written by stockade compile; the next compile replaces it\n"


def write_outputs(c: CompiledPolicy, target: str, out: Path) -> list[Path]:
    """Write the back end's files into `out` (see stockade.files: no link followed, nothing of anyone
    else's replaced, atomic); WriteError if it cannot."""
    return write_files(out, {name: MARK + text for name, text in render_outputs(c, target).items()}, MARK)
