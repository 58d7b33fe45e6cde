"""Options typed with a typographic dash: word processors turn `--` into `–`."""
from __future__ import annotations

from ..model.diagnostics import ParseError, Token

DASHES = {"\u2013": "en-dash", "\u2014": "em-dash", "\u2010": "hyphen", "\u2011": "non-breaking hyphen",
          "\u2012": "figure dash", "\u2212": "minus sign"}


def dash_defect(tok: Token) -> ParseError | None:
    """The error for a word that starts with a typographic dash, or None."""
    text = tok.text
    if not text or text[0] not in DASHES:
        return None
    kind = DASHES[text[0]]
    rest = text.lstrip("".join(DASHES))
    fixed = ("-" + rest) if len(rest) == 1 else ("--" + rest)
    return ParseError(f"`{text}` starts with an {kind} (U+{ord(text[0]):04X}), not `-`",
                      hint=f"write `{fixed}`; the text was probably pasted from a web page",
                      code="typographic-dash", token=tok)
