"""One iptables rule as one nft rule: the header and matches as expressions, the target as a statement."""
from __future__ import annotations

from ...model import Rule
from .core import Ctx, NftError, NftRule, quote
from .matches import header, translate_match
from .targets import translate_target


def translate_rule(rule: Rule, ctx: Ctx) -> NftRule:
    """Raises NftError (naming the rule) for anything nft cannot express with the same meaning."""
    ctx.proto = rule.proto.number if rule.proto and not rule.proto.invert else None
    ctx.origin = rule.origin
    try:
        parts = header(rule, ctx)
        comments = []
        for m in rule.matches:
            if m.name == "comment":
                comments.append(quote(m.data, "comment") and m.data)
            parts += translate_match(m.name, m.data, ctx)
        return NftRule(parts, translate_target(rule.target, ctx), "; ".join(comments) or None)
    except NftError as e:
        raise e if e.located else ctx.fail(str(e)) from None
