"""The lab's findings: one row per source × service × probe, observed beside predicted.

JSON shape (`stockade lab --json`, `stockade audit --json`):
{"target": PATH, "mismatches": N, "unobservable": N, "unpredictable": N, "probes": N, "seconds": S,
 "notes": [...], "rows": [{"family": 4, "source": "admins", "address": "198.51.100.7", "service": "22/tcp",
           "probe": "syn", "observed": "ACCEPT syn-ack", "predicted": "ACCEPT syn-ack",
           "status": "ok" | "MISMATCH" | "unobservable" | "unpredictable", "note": "...",
           "rule": "filter INPUT 3: -A INPUT ... -j ACCEPT"}]}
An outcome is the verdict on the server (ACCEPT, DROP, REJECT) and what came back (syn-ack, rst,
unreach, echo-reply, none); real connections report open / refused / unreachable / timeout,
held ones alive / dead; bursts report how many packets passed and what came back.
`unobservable`: the lab cannot see the outcome, so it is not compared. `unpredictable`: the
prediction depends on something the lab cannot pin down (the simulator's UNKNOWN, or the instant
a rate limit refills falling inside the probe's send window); the row shows every possible
outcome and is a MISMATCH if the kernel did none of them, but it never counts as agreeing.
`rule` (single-packet probes): the rule the simulator says decided the probe, whose kernel
counter moved too (else the row is a MISMATCH).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Row:
    family: int
    source: str
    address: str
    service: str
    probe: str
    observed: str
    predicted: str
    status: str = "ok"
    note: str = ""
    rule: str = ""


@dataclass
class Report:
    target: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        if row.status == "ok" and row.observed != row.predicted:
            row.status = "MISMATCH"
        self.rows.append(row)
        return row

    @property
    def mismatches(self) -> int:
        return sum(r.status == "MISMATCH" for r in self.rows)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    def to_json(self) -> dict:
        return {"target": self.target, "mismatches": self.mismatches,
                "unobservable": self.count("unobservable"), "unpredictable": self.count("unpredictable"),
                "probes": len(self.rows),
                "seconds": round(self.seconds, 2), "notes": self.notes, "rows": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        head = ("IPv", "source", "address", "service", "probe", "observed", "predicted", "status")
        lines = [head] + [(str(r.family), r.source, r.address, r.service, r.probe, r.observed, r.predicted,
                           r.status + (f" ({r.note})" if r.note else "")) for r in self.rows]
        widths = [max(len(x[i]) for x in lines) for i in range(len(head) - 1)]
        out = ["  ".join(c.ljust(w) for c, w in zip(x[:-1], widths)) + "  " + x[-1] for x in lines]
        out.append(f"{len(self.rows)} probes, {self.mismatches} mismatch(es), {self.count('unobservable')} "
                   f"unobservable, {self.count('unpredictable')} unpredictable, {self.seconds:.1f} s")
        return "\n".join(out + self.notes)
