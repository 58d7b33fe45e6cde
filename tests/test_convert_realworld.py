"""`convert` on the real-world scripts and dumps (kept outside the repository, see
tests/realworld/SOURCES.md; $STOCKADE_REALWORLD_SCRIPTS and $STOCKADE_REALWORLD_DUMPS): every input
stockade can read converts with 0 unexplained packet classes; one iptables-restore would refuse is a
positioned error, never a traceback. Without the stores the cases skip, saying so."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from stockade.commands.inputs import load
from stockade.model.diagnostics import StockadeError
from stockade.policy.convert import convert, prove

from .corpus import CORPUS

STORES = [Path(os.environ.get("STOCKADE_REALWORLD_SCRIPTS", CORPUS / "realworld-scripts")),
          Path(os.environ.get("STOCKADE_REALWORLD_DUMPS", CORPUS / "realworld-dumps"))]
FILES = sorted(str(p) for store in STORES if store.is_dir() for p in store.rglob("*") if p.is_file())


@pytest.mark.skipif(not FILES, reason=f"no real-world stores at {', '.join(map(str, STORES))} (see SOURCES.md)")
@pytest.mark.parametrize("path", FILES, ids=lambda p: Path(p).name)
def test_real_world_inputs_convert_with_every_difference_explained(path, tmp_path):
    try:
        rulesets = load(str(path), whole=True).builder.loaded()
    except StockadeError:
        return  # a dump iptables-restore refuses: `convert` says where, as `diff` does (exit 2)
    conv = convert(rulesets, path)
    text = conv.toml()
    proof = prove(conv, rulesets, str(tmp_path / "policy.toml"), text)
    assert [f"{e.change.text()}: {e.change.old.label()} ({e.change.old.rule})" for e in proof.unexplained] == []
