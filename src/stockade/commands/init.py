"""`stockade init`: a first policy proposed from what the host runs, every entry with why it is there."""
from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import click

from ..files import write_atomic
from . import options
from .exitcodes import OK
from .inputs import Source, load

SSH_LIMIT = "10/10m"  # new SSH connections per source when SSH is open to everyone


def _service(proto: str, port: int) -> str:
    from ..policy.catalogue import CATALOGUE

    for name, svc in CATALOGUE.items():
        if len(svc.ports) == 1 and (svc.ports[0].proto, svc.ports[0].lo, svc.ports[0].hi) == (proto, port, port):
            return name
    return f"{port}/{proto}"


def _private(addr: str) -> bool:
    try:
        a = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return a.is_private and not any(a in ipaddress.ip_network(n) for n in
                                    ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))


def _merge(policy: dict, comments: dict, found: list[dict], conv, origin: str) -> None:
    """Add a converted ruleset's allowances (its entries and groups) that the listeners did not propose."""
    have = {s for e in policy["allow"] for s in ([e["service"]] if isinstance(e["service"], str) else e["service"])}
    rename = {name: name if name not in policy["groups"] else f"x-{name}"[:19]
              for name in conv.policy.get("groups", {})}
    for e in conv.policy.get("allow", []):
        svcs = [e["service"]] if isinstance(e["service"], str) else list(e["service"])
        svcs = [s for s in svcs if s not in have]
        if not svcs:
            continue
        src = e["from"] if e["from"] == "everyone" else [rename[g] for g in e["from"]]
        for g in ([] if src == "everyone" else src):
            old = next(k for k, v in rename.items() if v == g)
            policy["groups"][g] = conv.policy["groups"][old]
        entry = {"service": svcs[0] if len(svcs) == 1 else svcs, "from": src} | (
            {"limit": e["limit"]} if "limit" in e else {})
        comments[f"allow.{len(policy['allow'])}"] = [f"{origin} allows it (guess: keep it if still needed)"]
        policy["allow"].append(entry)
        have.update(svcs)
        found.append({"kind": "allowance", "from": origin, "services": svcs, "sources": src})


@click.command("init")
@options.NETNS
@click.option("--from-script", "script", metavar="FILE", help="an existing firewall script whose allowances to keep")
@click.option("--out", metavar="FILE", help="write the policy here (default: standard output)")
@options.as_json("machine-readable result: what was found, and the policy")
def command(netns: str | None, script: str | None, out: str | None, as_json: bool) -> None:
    """Propose a policy from what this host (or --netns) runs: its listening sockets mapped to services,
    the current SSH sessions' sources as the admin group, its interfaces, and the allowances of the live
    ruleset and of --from-script. Every guess is a comment in the policy."""
    from ..kernel.backend import available, tool
    from ..kernel.host import Host
    from ..kernel.live import save_text
    from ..kernel.sockets import interfaces, listeners, ssh_peers
    from ..model import Family
    from ..parse.read import read
    from ..policy.convert import Conversion, convert

    host = Host(netns)
    found: list[dict] = []
    policy: dict = {"server": {}, "groups": {}, "allow": []}
    comments: dict[str, list[str]] = {}
    ifaces = interfaces(host) or ["eth0"]
    policy["server"]["interfaces"] = ifaces
    comments["server"] = [f"interfaces found: {', '.join(ifaces)}"]
    found.append({"kind": "interfaces", "names": ifaces})

    peers = ssh_peers(host)
    socks = listeners(host)
    ports: dict[str, list] = {}
    for s in socks:
        why = f"{s.process or 'a process'} listens on {s.address}:{s.port}/{s.proto}"
        found.append({"kind": "listener", "proto": s.proto, "address": s.address, "port": s.port,
                      "process": s.process, "opened": not s.local_only})
        if s.local_only:
            comments["server"].append(f"not opened: {why} (loopback only)")
            continue
        ports.setdefault(_service(s.proto, s.port), []).append(why)
    if "53/udp" in ports and "53/tcp" in ports:
        ports["dns"] = ports.pop("53/udp") + ports.pop("53/tcp")
    if peers:
        policy["groups"]["admins"] = peers
        comments["groups"] = [f"admins: the sources of the SSH sessions open now ({', '.join(peers)})"]
        found.append({"kind": "ssh-sessions", "sources": peers})
    if "ssh" in ports:
        why = ports.pop("ssh")
        entry = {"service": "ssh", "from": ["admins"]} if peers else {"service": "ssh", "from": "everyone",
                                                                       "limit": SSH_LIMIT}
        comments["allow.0"] = why + (["from the admins: the SSH sessions' sources"] if peers else [
            f"guess: no SSH session seen, so SSH is open to everyone, {SSH_LIMIT} new connections per source; "
            "narrow `from` to your admin addresses"])
        policy["allow"].append(entry)
    public = list(ports)
    if public:
        comments[f"allow.{len(policy['allow'])}"] = [w for s in public for w in ports[s]] + [
            "guess: open to everyone, as a listener on every address usually serves the internet"]
        policy["allow"].append({"service": public[0] if len(public) == 1 else public, "from": "everyone"})

    have = available(host)
    for backend in ("iptables-nft", "iptables-legacy"):
        if not have.get(backend):
            continue
        live = {fam: save_text(host, backend, fam) for fam in (4, 6)}
        if not any(line.startswith("-A ") for t in live.values() for line in t.splitlines()):
            continue
        rulesets = {}
        for fam, text in live.items():
            b = read(text, f"live {tool(backend, fam, 'save')}", "save", Family(fam))
            rulesets[Family(fam)] = b.rulesets[Family(fam)]
        found.append({"kind": "live-ruleset", "backend": backend})
        _merge(policy, comments, found, convert(rulesets, f"the live ruleset ({backend})"),
               f"the live ruleset ({backend})")
    if script:
        rulesets = load(script, Source(), whole=True).builder.loaded()
        _merge(policy, comments, found, convert(rulesets, script), script)

    if any(_private(p) for p in peers):
        policy["protect"] = {"bogons": False}
        comments["protect"] = ["bogons: off, as an SSH session comes from a private address"]
    if not policy["groups"]:
        del policy["groups"]
    where = f"namespace {netns}" if netns else "this host"
    conv = Conversion(where, policy, comments, [], title=f"Proposed by `stockade init` from {where}: check every "
                      "guess, then `stockade check`, `stockade lab`, `stockade apply` and `stockade confirm`.")
    toml = conv.toml()
    from ..policy.schema import load_policy

    load_policy(out or "proposed-policy.toml", toml)  # a proposal the schema refuses is a bug, raised here
    if out is not None:
        write_atomic(Path(out), toml, 0o644)  # WriteError: `PATH: error: cannot write: ...`, exit 2 (errors.py)
    if as_json:
        click.echo(json.dumps({"found": found, "policy": toml, "out": out}, indent=2))
    else:
        for f in found:
            click.echo("found: " + ", ".join(f"{k}={v}" for k, v in f.items() if k != "kind") + f" ({f['kind']})",
                       err=True)
        if out is None:
            click.echo(toml)
    sys.exit(OK)
