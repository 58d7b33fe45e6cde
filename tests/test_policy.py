"""The policy file: validation with positions, compilation, and nothing injectable."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from stockade.model import Family
from stockade.policy.compile import compile_policy
from stockade.policy.output import render_outputs
from stockade.policy.schema import PolicyError
from stockade.render.save import render_save

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.toml"))


def errors(tmp_path, text: str, name: str = "p.toml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyError) as e:
        compile_policy(path)
    return [str(d).replace(str(tmp_path) + "/", "") for d in e.value.diagnostics]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_compile_deterministically(example):
    first = render_outputs(compile_policy(example), "iptables")
    assert first == render_outputs(compile_policy(example), "iptables")
    for name in ("rules.v4", "rules.v6"):
        first_in = next(line for line in first[name].splitlines() if line.startswith("-A INPUT "))
        assert first_in.startswith("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED")
        # a banned source's open connections are cut too: the established accept is not for it
        assert (" ! --match-set stk-bans" in first_in) == ("[bans]" in example.read_text())


def test_unknown_key_has_position_and_suggestion(tmp_path):
    assert errors(tmp_path, "[protect]\nxmass = true\n") == [
        "p.toml:2:1: error: protect.xmass: unknown key `xmass`\n  hint: did you mean `xmas`?"]


def test_service_typo(tmp_path):
    (err,) = errors(tmp_path, '[[allow]]\nservice = "ssh"\n\n[[allow]]\nservice = ["http", "htps"]\n')
    assert err.startswith("p.toml:5:1: error: allow.1.service: unknown service `htps`; did you mean `https`?")


def test_bad_address_in_group(tmp_path):
    (err,) = errors(tmp_path, '[groups]\nadmins = ["192.0.2.1", "192.0.2.300"]\n')
    assert err.startswith("p.toml:2:1: error: groups.admins: `192.0.2.300` is not an address")


def test_group_file_errors_point_into_the_file(tmp_path):
    (tmp_path / "blocked.txt").write_text("# list\n203.0.113.5\nnot-an-ip\n")
    (err,) = errors(tmp_path, '[groups]\nbad = { file = "blocked.txt" }\n[blocklist]\ninbound = ["bad"]\n')
    assert err.startswith("blocked.txt:3:1: error: `not-an-ip` is not an address or network")


def test_unknown_group(tmp_path):
    (err,) = errors(tmp_path, '[[allow]]\nservice = "ssh"\nfrom = ["admns"]\n')
    assert err.startswith("p.toml:3:1: error: unknown group `admns`")


def test_toml_syntax_error(tmp_path):
    (err,) = errors(tmp_path, '[server]\ninterfaces = ["eth0"\n')
    assert err.startswith("p.toml:") and "not valid TOML" in err


@pytest.mark.parametrize("prefix", ['drop"\n-A INPUT -j ACCEPT', "x\r\ny", "a" * 40, '" -j ACCEPT #'])
def test_log_prefix_cannot_inject(tmp_path, prefix):
    text = '[log]\nprefix = """' + prefix.replace("\\", "\\\\") + '"""\n'
    assert any("log.prefix" in e for e in errors(tmp_path, text))


@pytest.mark.parametrize("name", ["a b", "x\ny", "--match-set", "-j", "ACCEPT", "everyone"])
def test_group_names_cannot_inject(tmp_path, name):
    text = f'[groups]\n"{name.replace(chr(10), chr(92) + "n")}" = ["192.0.2.1"]\n'
    assert any("group name" in e for e in errors(tmp_path, text))


@pytest.mark.parametrize("svc", ["22/tcp -j ACCEPT", "--dport", "22/tcp\n", "0/tcp", "70000/udp", "22/icmp"])
def test_service_strings_cannot_inject(tmp_path, svc):
    text = f'[[allow]]\nservice = "{svc.replace(chr(10), chr(92) + "n")}"\n'
    assert any("allow.0.service" in e for e in errors(tmp_path, text))


def test_policy_file_name_with_newline_cannot_inject_a_rule(tmp_path):
    """The rule comments name the policy file: only its safe characters, so no line break gets through."""
    c = compile_policy(tmp_path / "evil\n-A INPUT -j ACCEPT.toml", text="[server]\n")
    for target in ("iptables", "nftables"):
        text = "".join(render_outputs(c, target).values())
        assert "\n-A INPUT -j ACCEPT" not in text and "evil_-A_INPUT_-j_ACCEPT.toml" in text


def test_every_rule_names_its_policy_line(tmp_path):
    c = compile_policy(EXAMPLES[0])
    for rs in c.rulesets.values():
        for table in rs.tables.values():
            for chain in table.chains.values():
                for r in chain.rules:
                    assert any(m.name == "comment" for m in r.matches)


def test_custom_port_ranges_and_multiport(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[[allow]]\nservice = ["6000-6010/tcp", "80/tcp", "8080/tcp"]\n')
    text = render_save(compile_policy(path).rulesets[Family.IPV4])
    assert "-p tcp -m multiport --dports 6000:6010,80,8080" in text


def test_an_allow_line_of_many_ports_compiles_for_both_back_ends(tmp_path):
    """Its rules' note lists every port: cut to what nft keeps (128 bytes), the policy line still first."""
    path = tmp_path / "p.toml"
    path.write_text("[[allow]]\nservice = [" + ", ".join(f'"{p}/tcp"' for p in range(10001, 10061)) + "]\n")
    compiled = compile_policy(path)
    assert "ruleset.nft" in render_outputs(compiled, "nftables")
    notes = [n for rs in compiled.rulesets.values() for n in re.findall(r'--comment "([^"]*)"', render_save(rs))]
    assert any(n.startswith("p.toml:1 allow 10001/tcp+") and n.endswith("...") for n in notes)
    assert all(len(n.encode()) <= 128 for n in notes)


def test_a_new_connection_from_a_banned_or_blocklisted_source_is_dropped_at_input_by_its_line(tmp_path):
    """INPUT jumps to stk-syn/stk-udp only from sources in no ban or blocklist set; right after each jump,
    a banned source is dropped by the ban line's rule and what is left (the blocklist's addresses and
    networks) by the blocklist line's, before any of stk-syn's rules; a clean source goes on."""
    from stockade.model.packet import from_json
    from stockade.semantics.explain import Explainer

    (tmp_path / "bad.txt").write_text("203.0.113.66\n203.0.113.128/25\n")
    path = tmp_path / "p.toml"
    path.write_text('[server]\ninterfaces = ["eth0"]\n\n[groups]\nbad = { file = "bad.txt" }\n\n[bans]\n'
                    'timeout = 60\n\n[blocklist]\ninbound = ["bad"]\n\n[[allow]]\nservice = "ssh"\n')
    cp = compile_policy(path)
    cp.rulesets[Family.IPV4].sets["stk-bans4"].members.append("198.51.100.99")
    run = Explainer(cp.rulesets).run
    chain = cp.rulesets[Family.IPV4].tables["filter"].chains["INPUT"].rules
    for src, verdict, line in (("198.51.100.99", "DROP", "p.toml:7"), ("203.0.113.66", "DROP", "p.toml:11"),
                               ("203.0.113.200", "DROP", "p.toml:11"), ("198.51.100.1", "ACCEPT", None)):
        for proto in ("tcp", "udp"):
            spec = {"hook": "INPUT", "iif": "eth0", "dst": "192.0.2.10", "src": src, "proto": proto, "dport": 22,
                    **({"tcp_flags": ["SYN"]} if proto == "tcp" else {})}
            res = run(from_json(spec))
            last = res.matched[-1]
            if line is None:
                assert last["chain"] != "INPUT", (src, proto, res.to_json())
                continue
            assert res.verdict == verdict and last["chain"] == "INPUT", (src, proto, res.to_json())
            assert chain[last["rule"] - 1].origin.tag == line, (src, proto)
    assert run(from_json({"hook": "INPUT", "iif": "eth0", "dst": "192.0.2.10", "src": "198.51.100.1", "proto": "tcp",
                          "dport": 22, "tcp_flags": ["SYN"]})).verdict == "ACCEPT"
