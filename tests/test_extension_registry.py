"""Every registered extension owns all of itself: a test fails when one lacks a part.

The parts (issue 11's recipe for adding an extension): an nft translation or an explicit
refusal, a target's declared terminality, and a kernel round-trip template. Each check is a
function returning the extensions that fail it, so that it is also shown to catch a made-up
extension lacking the part.
"""
from __future__ import annotations

import itertools

import pytest

from stockade.extensions import REGISTRY, Extension
from stockade.parse.save import split_line
from tests.kernel.test_roundtrip import TEMPLATES


def registered() -> list[Extension]:
    """Each registered extension once (aliases such as icmpv6 name the same one)."""
    seen: dict[int, Extension] = {}
    for ext in itertools.chain(*REGISTRY.matches.values(), *REGISTRY.targets.values()):
        seen.setdefault(id(ext), ext)
    return list(seen.values())


def without_nft(exts: list[Extension]) -> list[str]:
    """Extensions with neither their own `nft` nor a declared `nft_refusal` (or, contradictorily, both)."""
    return [e.name for e in exts if (type(e).nft is Extension.nft) == (e.nft_refusal is None)]


def without_terminal(exts: list[Extension]) -> list[str]:
    """Targets that do not declare whether they end traversal (flatten, the differential lab ask)."""
    return [e.name for e in exts if e.kind == "target" and e.terminal is None]


def without_roundtrip(exts: list[Extension]) -> list[str]:
    """Extensions no rule template of tests/kernel/test_roundtrip.py uses (its own or one the
    extension declares in `roundtrip`)."""
    used = {name for name, templates in TEMPLATES.items() if templates}
    for t in itertools.chain(*TEMPLATES.values()):
        words = [w.text for w in split_line(t.text, "template", 1)]
        used |= {b for a, b in itertools.pairwise(words) if a in ("-m", "-j", "-g")}
    return [e.name for e in exts if e.name not in used]


CHECKS = [without_nft, without_terminal, without_roundtrip]
# The symbolic constraint (`constraint`, or a declared `undecidable`) is checked the same way by
# tests/test_constraints.py of the symbolic engine's branch.


class Bare(Extension):
    """An extension that declares nothing beyond parse and save."""

    name = "bare-test-extension"
    kind = "target"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_every_extension_has_it(check):
    assert check(registered()) == []


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_check_catches_a_bare_extension(check):
    assert check([Bare()]) == ["bare-test-extension"]


def test_nft_refusal_and_translation_exclude_each_other():
    class Both(Extension):
        name = "both"
        nft_refusal = "cannot"

        def nft(self, data, ctx):
            return []

    assert without_nft([Both()]) == ["both"]
