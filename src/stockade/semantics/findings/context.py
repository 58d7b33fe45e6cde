"""One family's ruleset prepared for the checks: flattened hooks, classes, verdicts."""
from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from ...extensions.opaque import by_command
from ...model import Origin, Ruleset
from ...model.ranges import difference as iv_sub
from ...model.ranges import intersect as iv_and
from ...model.ranges import size as iv_size
from ...model.space import KINDS, SRC
from ..cells import Entry, Space, hook_entries, refine
from ..diff import Outcome, outcome, possible
from ..flatten import FlatError
from ..simulate import Simulator

CELL_BUDGET = 20_000  # classes per hook for rule-by-rule coverage; beyond it lint stays fast and says so
KIND_OF = {k.label: ((i, i),) for i, k in enumerate(KINDS)}


class Cell:
    """A class of a hook, the entries that concern it, and its outcome: one simulator run, made
    only when a check asks for it (most checks look at a few classes of many)."""

    def __init__(self, a: Analysis, box: dict, kept: list[Entry], hook: str):
        self.a, self.box, self.kept, self.hook = a, box, kept, hook

    @cached_property
    def outcome(self) -> Outcome:
        return self.a.outcome(self.box, self.kept, self.hook)

    def surely(self, verdict: str) -> bool:
        """Whether every packet of the class surely gets `verdict`; no simulator run when the entries
        already allow another (a blocklist's classes under a check that wants ACCEPT)."""
        if possible(self.kept, self.a.policy(self.hook))[0] != {verdict}:
            return False
        return self.outcome.verdict == verdict and self.outcome.may == {verdict}


class Analysis:
    """Classes and verdicts of the filter hooks of one ruleset, computed once and shared by the checks."""

    def __init__(self, rs: Ruleset, file: str):
        self.rs, self.file, self.family = rs, file, rs.family
        self.space = Space(rs.family, [rs])
        self.sim = Simulator(rs)
        self.errors: list[FlatError] = []
        self._entries: dict[str, list[Entry]] = {}
        self._cells: dict[str, list] = {}
        self._wide: dict[str, int] = {}
        self.memo: dict = {}  # what several checks ask for (access.py: the new inbound classes)

    def entries(self, hook: str) -> list[Entry]:
        if hook not in self._entries:
            try:
                self._entries[hook] = hook_entries(self.rs, hook, self.space)
            except FlatError as e:
                self.errors.append(e)
                self._entries[hook] = []
        return self._entries[hook]

    def policy(self, hook: str) -> str:
        tbl = self.rs.tables.get("filter")
        return (tbl.chains[hook].policy if tbl and hook in tbl.chains else None) or "ACCEPT"

    def cells(self, hook: str) -> list[tuple[dict, list[Entry]]] | None:
        """Every class of the hook with the entries that concern it (see cells.refine); None if
        there are more than CELL_BUDGET (rule-by-rule questions are then not answered)."""
        if hook not in self._cells:
            ents = self.entries(hook)
            got: list | None = []
            for start in self.space.start_boxes(hook):
                for box, (kept,) in refine(self.space, start, [ents], lambda e: e.cons):
                    got.append((box, kept))
                    if len(got) > CELL_BUDGET:
                        got = None
                        break
                if got is None:
                    break
            self._cells[hook] = got
        return self._cells[hook]

    def classes(self, hook: str, keep: Callable[[dict], bool] | None = None, **dims) -> list[Cell]:
        """The classes inside the given dimension values. With `keep`, only the classes it accepts,
        in the same order; it must refuse every part of a box it refuses (e.g. "wide": a part's
        sources are fewer), so the parts it refuses are not cut further."""
        ents = self.entries(hook)
        out = []
        for start in self.space.start_boxes(hook):
            box = dict(start)
            for d, v in dims.items():
                box[d] = iv_and(box[d], v)
            if any(not v for v in box.values()):
                continue
            for cell, (kept,) in refine(self.space, box, [ents], lambda e: e.cons, keep=keep):
                out.append(Cell(self, cell, kept, hook))
        return out

    def wide(self, box: dict, hook: str = "INPUT") -> bool:
        """Whether the class holds more than half the sources that can reach the hook."""
        full = self._wide.get(hook)
        if full is None:
            full = self._wide[hook] = iv_size(iv_sub(self.space.universe[SRC], self.space.martians(hook)))
        src = box[SRC]
        return ((src[0][1] - src[0][0] + 1) if len(src) == 1 else iv_size(src)) * 2 > full  # (asked per part)

    def outcome(self, box: dict, kept: list[Entry], hook: str) -> Outcome:
        return outcome(self.sim, self.space.packet(box, hook), kept, self.policy(hook))

    def kind(self, label: str):
        return KIND_OF[label]

    def iface(self, name: str):
        i = self.space.ifaces.index(name)
        return ((i, i),)

    def anchor(self, hook: str = "INPUT") -> Origin:
        """Where a finding about a whole chain points: its first rule, else the file's first line."""
        tbl = self.rs.tables.get("filter")
        chain = tbl.chains.get(hook) if tbl else None
        own = [r for r in chain.rules if not by_command(r)] if chain is not None else []
        if own and own[0].origin:
            return own[0].origin
        firsts = [r.origin for t in self.rs.tables.values() for c in t.chains.values()
                  for r in [r for r in c.rules if not by_command(r)][:1] if r.origin]
        return min(firsts, key=lambda o: (o.line, o.col)) if firsts else Origin(self.file, 1, 1)

