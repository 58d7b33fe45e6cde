"""What every nftables translation shares: the vocabulary of model/nft.py, and a translated rule.

nft 1.0.6 refuses comments of more than 128 bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...model.nft import (
    IDENT,
    Ctx,
    Decls,
    NftError,
    Part,
    addr_match,
    address,
    element_list,
    hexnum,
    identifier,
    neg,
    quote,
    span,
)

COMMENT_MAX = 128  # bytes: nft refuses longer comments

__all__ = ["COMMENT_MAX", "IDENT", "Ctx", "Decls", "NftError", "NftRule", "Part", "addr_match", "address",
           "element_list", "hexnum", "identifier", "neg", "quote", "span"]


@dataclass
class NftRule:
    """A translated rule: its matches, then the statement(s) its target became."""

    parts: list[Part]
    action: str | None = None  # "accept", "jump X", "log ...", "dnat to ..."; None: only count
    comment: str | None = None
    counter: bool = True

    @property
    def verdict(self) -> bool:
        """A plain verdict, as a verdict map can hold it."""
        return self.action is not None and (self.action in ("accept", "drop", "return")
                                            or self.action.startswith(("jump ", "goto ")))

    def text(self) -> str:
        words = [p.text for p in self.parts] + (["counter"] if self.counter else [])
        words += [self.action] if self.action else []
        words += [f"comment {quote(self.comment, 'comment', COMMENT_MAX)}"] if self.comment is not None else []
        return " ".join(words)
