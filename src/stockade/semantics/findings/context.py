"""One family's ruleset prepared for the checks: flattened hooks, classes, verdicts."""
from __future__ import annotations

from ...extensions.opaque import by_command
from ...model import Origin, Ruleset
from ...model.ranges import intersect as iv_and
from ...model.space import KINDS
from ..cells import Entry, Space, hook_entries, refine
from ..diff import Outcome, outcome
from ..flatten import FlatError
from ..simulate import Simulator

CELL_BUDGET = 20_000  # classes per hook for rule-by-rule coverage; beyond it lint stays fast and says so


class Analysis:
    """Classes and verdicts of the filter hooks of one ruleset, computed once and shared by the checks."""

    def __init__(self, rs: Ruleset, file: str):
        self.rs, self.file, self.family = rs, file, rs.family
        self.space = Space(rs.family, [rs])
        self.sim = Simulator(rs)
        self.errors: list[FlatError] = []
        self._entries: dict[str, list[Entry]] = {}
        self._cells: dict[str, list] = {}

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

    def classes(self, hook: str, **dims) -> list[tuple[dict, Outcome]]:
        """The classes inside the given dimension values, with their outcome."""
        ents = self.entries(hook)
        out = []
        for start in self.space.start_boxes(hook):
            box = dict(start)
            for d, v in dims.items():
                box[d] = iv_and(box[d], v)
            if any(not v for v in box.values()):
                continue
            for cell, (kept,) in refine(self.space, box, [ents], lambda e: e.cons):
                out.append((cell, self.outcome(cell, kept, hook)))
        return out

    def outcome(self, box: dict, kept: list[Entry], hook: str) -> Outcome:
        return outcome(self.sim, self.space.packet(box, hook), kept, self.policy(hook))

    def kind(self, label: str):
        i = next(n for n, k in enumerate(KINDS) if k.label == label)
        return ((i, i),)

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

