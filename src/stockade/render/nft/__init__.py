"""The nftables back end: the model as one `table inet` for `nft -f` (nft 1.0.6 syntax).

Each extension translates itself (`Extension.nft` in its module, speaking model/nft.py) as
iptables-translate does (its corpus .txlate files are the golden tests); here core.py holds a
translated rule, translate.py a whole rule (its header, verdicts and jumps), sets.py declares
ipsets, optimise.py merges port-only variants into set lookups, and layout.py arranges chains
and names in the table.
"""
from .core import Ctx, NftError, NftRule
from .layout import render_nft
from .translate import translate_rule

__all__ = ["Ctx", "NftError", "NftRule", "render_nft", "translate_rule"]
