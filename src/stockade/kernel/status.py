"""`stockade status`: what is live, with counters mapped back to policy lines, the last applied and
confirmed versions, drift (stockade's part changed by hand) and the rules of other tools."""
from __future__ import annotations

import difflib
import re

from ..model import comment_tag
from . import backend as backends
from .backend import TABLE
from .bans import current as current_bans
from .host import Host
from .live import nft_table, read_part, save_text
from .part import HOOK_COMMENT, OwnedPart
from .rollback import seconds_left, timer_alarm
from .state import State

_COMMENT = re.compile(r'--comment (?:"([^"]*)"|(\S+))')
_ELEMENT_COMMENT = re.compile(r'comment "([^"]*)"(?=\s*[,}])')
_NFT_RULE = re.compile(r'counter packets (\d+) bytes (\d+).*?(?:comment "([^"]*)")?\s*$')


def _origin(comment: str | None) -> tuple[str | None, str | None]:
    """A compiler comment `FILE:LINE note` (or `FILE:KEY note` for a default the file leaves unsaid)
    -> (origin, note)."""
    if not comment:
        return None, None
    if comment == HOOK_COMMENT:  # apply's hook from a built-in chain into stockade's
        return HOOK_COMMENT, "hook"
    tag = comment_tag(comment)
    return (tag, comment[len(tag):].strip() or None) if tag else (None, comment)


def by_line(rules: list[dict], policy_text: str | None) -> list[dict]:
    """The rules' counters summed per policy line (both families), in the file's order, each with the
    line's text when the applied policy's text is known; rules without a stockade comment are `-`."""
    sums: dict[str, dict] = {}
    for r in rules:
        s = sums.setdefault(r["origin"] or "-", {"origin": r["origin"] or "-", "packets": 0, "bytes": 0, "rules": 0})
        s["packets"] += r["packets"]
        s["bytes"] += r["bytes"]
        s["rules"] += 1
    lines = (policy_text or "").splitlines()
    for s in sums.values():
        where = s["origin"].rpartition(":")[2]
        s["line"] = int(where) if where.isdigit() else None
        s["text"] = lines[s["line"] - 1].strip() if s["line"] and s["line"] <= len(lines) else \
            ("(a default the file leaves unsaid)" if ":" in s["origin"] and s["line"] is None else None)
    return sorted(sums.values(), key=lambda s: (s["line"] is None, s["line"] or 0, s["origin"]))


def iptables_rules(host: Host, backend: str) -> list[dict]:
    out = []
    for family in (4, 6):
        table = ""
        for line in save_text(host, backend, family, counters=True).splitlines():
            if line.startswith("*"):
                table = line[1:]
            m = re.match(r"\[(\d+):(\d+)\] -A (\S+) (.*)$", line)
            if not m or not (m.group(3).startswith("stk-") or re.search(r" -[jg] stk-", line)):
                continue
            c = _COMMENT.search(m.group(4))
            origin, note = _origin(c and (c.group(1) or c.group(2)))
            out.append({"family": family, "table": table, "chain": m.group(3), "packets": int(m.group(1)),
                        "bytes": int(m.group(2)), "origin": origin, "note": note, "rule": m.group(4)})
    return out


def nft_rules(host: Host) -> list[dict]:
    out, chain = [], ""
    for line in nft_table(host, stateless=False).splitlines():
        s = line.strip()
        if s.startswith("chain "):
            chain = s.split()[1]
        m = _NFT_RULE.search(s)
        if m and not s.startswith(("chain ", "type ")):
            # rules merged into one lookup keep their comments on the elements, all of one policy line
            origin, note = _origin(m.group(3) or "; ".join(_ELEMENT_COMMENT.findall(s)) or None)
            out.append({"family": None, "table": f"inet {TABLE}", "chain": chain, "packets": int(m.group(1)),
                        "bytes": int(m.group(2)), "origin": origin, "note": note, "rule": s})
    return out


def others(host: Host, backend: str) -> list[dict]:
    """Chains of other tools with their rule counts, and other nft tables."""
    out = []
    proc = host.run(["nft", "list", "tables"], check=False)
    for line in proc.stdout.splitlines():
        if line.strip() and line.strip() != f"table inet {TABLE}":
            out.append({"kind": "nft table", "name": line.strip().removeprefix("table ")})
    if backend == "nftables":
        return out
    for family in (4, 6):
        table, counts = "", {}
        for line in save_text(host, backend, family).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith("-A ") and not line.split()[1].startswith("stk-") and \
                    not re.search(r" -[jg] stk-", line):
                counts[(table, line.split()[1])] = counts.get((table, line.split()[1]), 0) + 1
        out += [{"kind": f"{'ip6tables' if family == 6 else 'iptables'} chain", "name": f"{t} {c}", "rules": n}
                for (t, c), n in counts.items()]
    return out


def alarms(state: State) -> list[str]:
    """What a killed stockade left that needs a person: a half-done transaction, a dead timer."""
    out = []
    j = state.read("journal")
    if j is not None:
        out.append(f"ALARM: a transaction a killed stockade left half done (from {j['from']['digest']} to "
                   f"{j['to']['digest']}): run `stockade repair` to put {j['from']['digest']} back")
    t = timer_alarm(state)
    return out + ([t] if t else [])


def status(netns: str | None) -> dict:
    """Read-only: it never changes the kernel or the state; what needs repair is reported as an alarm."""
    from .feeds import feed_status  # the feed reader loads the policy schema: only here
    host, state = Host(netns), State.for_netns(netns)
    applied, confirmed, pending = state.read("applied"), state.read("confirmed"), state.read("pending")
    backend = backends.choose(host, "auto", applied and applied.get("backend"))
    live = read_part(host, backend)
    drift = None
    if applied is not None and applied["backend"] == backend and applied["version"] != live.digest:
        old = OwnedPart.from_json(applied["part"])
        drift = [ln for k in sorted(set(old.text) | set(live.text)) for ln in difflib.unified_diff(
            old.text.get(k, "").splitlines(), live.text.get(k, "").splitlines(), f"applied/{k}", f"live/{k}",
            lineterm="", n=0)]
    rules = nft_rules(host) if backend == "nftables" else iptables_rules(host, backend)

    def brief(r):
        return r and {k: r.get(k) for k in ("version", "at", "policy", "rolled_back", "confirmed_at")}
    return {"netns": host.label, "backend": backend, "live_version": live.digest,
            "stockade_rules_live": not live.empty, "applied": brief(applied), "confirmed": brief(confirmed),
            "pending": pending and {"deadline": pending["deadline"], "seconds_left": _left(pending)},
            "alarms": alarms(state), "drift": drift is not None, "drift_lines": drift or [],
            "rules": rules, "lines": by_line(rules, applied and applied.get("policy_text")),
            "bans": [{"address": a, "set": name, "expires_in": left}
                     for name, members in sorted(current_bans(host, backend).items())
                     for a, left in sorted(members.items(), key=lambda m: m[1])],
            "others": others(host, backend), "feeds": feed_status(state)}


def _left(pending: dict) -> float | None:
    left = seconds_left(pending)
    return None if left is None else round(left, 1)


def status_text(s: dict) -> str:
    lines = [f"{s['netns']}: {s['backend']}, live version {s['live_version']}"]
    lines += s["alarms"]
    for key in ("applied", "confirmed"):
        r = s[key]
        lines.append(f"{key}: " + (f"{r['version']} at {r['at']}" + (f" from {r['policy']}" if r.get("policy") else "")
                                   + (f" (rollback: {r['rolled_back']})" if r.get("rolled_back") else "")
                                   if r else "never"))
    if s["pending"] and not s["alarms"]:
        lines.append(f"unconfirmed: rolls back in {s['pending']['seconds_left']} s unless `stockade confirm`")
    lines.append("drift: " + ("stockade's rules were changed by hand:" if s["drift"] else "none"))
    lines += [f"  {d}" for d in s["drift_lines"] if not d.startswith(("---", "+++", "@@"))]
    lines.append(f"{'packets':>10} {'bytes':>12}  {'policy line':<36} rules  text")
    for r in s["lines"]:
        lines.append(f"{r['packets']:>10} {r['bytes']:>12}  {r['origin']:<36} {r['rules']:>5}  {r['text'] or ''}")
    lines.append(f"{'packets':>10} {'bytes':>12}  {'policy line':<36} rule")
    for r in s["rules"]:
        lines.append(f"{r['packets']:>10} {r['bytes']:>12}  {(r['origin'] or '-'):<36} "
                     f"{r['chain']}: {r['note'] or r['rule']}")
    if s["bans"]:
        lines.append(f"bans: {len(s['bans'])} (one set element each)")
        lines += [f"  {b['address']:<40} expires in {b['expires_in']} s" for b in s["bans"][:50]]
        if len(s["bans"]) > 50:
            lines.append(f"  ... and {len(s['bans']) - 50} more (--json lists all)")
    for f in s.get("feeds", []):
        age = "never fetched" if f["age_seconds"] is None else f"fetched {f['age_seconds']} s ago"
        lines.append(f"feed {f['feed']}: {f['entries']} entries, {age}"
                     + (f", last error: {f['last_error']}" if f["last_error"] else ""))
    if s["others"]:
        lines.append("other tools' rules (left as they are):")
        lines += [f"  {o['kind']} {o['name']}" + (f": {o['rules']} rule(s)" if "rules" in o else "")
                  for o in s["others"]]
    return "\n".join(lines) + "\n"


def netns_alarms(netns: str | None) -> list[str]:
    return alarms(State.for_netns(netns))
