"""What a policy opens to whom, as a table: the summary `stockade check` prints."""
from __future__ import annotations

from .catalogue import resolve
from .schema import Policy


def service_table(p: Policy) -> list[dict]:
    rows = [{"service": "everything", "ports": "all", "from": ", ".join(p.admin), "limit": None}] if p.admin else []
    for allow in p.allow:
        for name in allow.services:
            rows.append({"service": name, "ports": " ".join(str(x) for x in resolve(name).ports),
                         "from": ", ".join(allow.sources), "limit": allow.limit})
    rows.append({"service": "ping", "ports": "icmp echo", "from": "everyone" if p.icmp.ping != "deny" else "nobody",
                 "limit": p.icmp.rate if p.icmp.ping == "limit" else None})
    return rows
