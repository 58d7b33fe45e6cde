"""-m comment: a note on a rule, up to 255 bytes; it never affects matching."""
from __future__ import annotations

from ..model.diagnostics import ParseError
from ..model.nft import Part
from .base import Extension, Option, register
from .values import check_printable, save_string

MAX = 255


def parse_comment(text: str) -> str:
    if len(text.encode()) > MAX:
        raise ParseError(f"comment is {len(text.encode())} bytes; the kernel keeps at most {MAX}",
                         code="too-long", hint="shorten the comment")
    check_printable(text, "comment")
    return text


@register
class CommentMatch(Extension):
    name = "comment"
    classwise = True
    options = (Option("--comment", type=parse_comment, required=True),)

    def finish(self, acc, ctx):
        return acc["comment"][1]

    def holds(self, text: str, pkt, env) -> bool:
        return True

    def constraint(self, text: str, frame) -> dict:
        return {}

    def save(self, text: str) -> list[str]:
        return ["--comment", save_string(text)]

    def nft(self, text: str, ctx) -> list[Part]:
        return []  # becomes the rule's comment (render/nft/translate.py)
