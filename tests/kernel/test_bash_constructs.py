"""Each bash construct the script reader interprets, against real bash.

Every case is a small script using one construct to decide which iptables rules
it makes. Real `bash` runs it (with the case's arguments and environment, in a
directory holding the case's data files) inside a throwaway network namespace;
the namespace's `iptables-save`/`ip6tables-save` must equal stockade's reading of
the same script, rule for rule, with no error or warning from stockade. The
scripts run only iptables, ip6tables and bash builtins and write no file.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from stockade.model import Family
from stockade.parse.script import Invocation, read_script
from stockade.render.save import render_save

IPT = "iptables -A INPUT"
EXPECTED = {"unknown-chain", "duplicate-chain"}  # commands the kernel refuses too (the scripts test for it)

# (id, script, args, env, files beside the script)
CASES: list[tuple[str, str, list[str], dict[str, str], dict[str, str]]] = [
    ("quoting-and-splitting", (f'P="22 80"\nfor p in $P; do {IPT} -p tcp --dport $p -j ACCEPT; done\n'
     f'{IPT} -m comment --comment "$P" -j ACCEPT\n{IPT} -m comment --comment \'$P\' -j ACCEPT\n'
     f'{IPT} -m comment --comment a\\ b\\"c -j ACCEPT\n{IPT} -m comment --comment $\'x\\x41y\' -j ACCEPT\n'), [], {}, {}),
    ("parameter-defaults", (f'{IPT} -m comment --comment "${{u:-d1}}" -j ACCEPT\n: ${{v:=d2}}\n'
     f'{IPT} -m comment --comment "$v" -j ACCEPT\nw=""\n{IPT} -m comment --comment "${{w:-d3}}x${{w-d4}}" -j ACCEPT\n'
     f'{IPT} -m comment --comment "${{v:+alt}}" -j ACCEPT\n'), [], {}, {}),
    ("parameter-patterns", ('x=abc.tar.gz\n'
     f'{IPT} -m comment --comment "${{x#*.}} ${{x##*.}} ${{x%.*}} ${{x%%.*}}" -j ACCEPT\n'
     f'{IPT} -m comment --comment "${{x//a/A}} ${{x/./-}} ${{#x}} ${{x:2:5}} ${{x: -2}} ${{x^^}}" -j ACCEPT\n'
     f'ref=x\n{IPT} -m comment --comment "${{!ref}}" -j ACCEPT\n'), [], {}, {}),
    ("arrays", ('ips=(192.0.2.1 "192.0.2.2")\nips+=(192.0.2.3)\nips[5]=192.0.2.5\n'
     f'for ip in "${{ips[@]}}"; do {IPT} -s $ip -j DROP; done\n'
     f'{IPT} -m comment --comment "${{ips[*]}} n=${{#ips[@]}} one=${{ips[1]}} last=${{ips[-1]}}" -j ACCEPT\n'
     'declare -A port=([ssh]=22 [web]=80)\n'
     f'{IPT} -p tcp --dport ${{port[web]}} -j ACCEPT\n{IPT} -m comment --comment "${{!ips[*]}}" -j ACCEPT\n'),
     [], {}, {}),
    ("arithmetic", ('base=8000\nn=2\n((n++))\nlet "n = n * 2"\n'
     f'{IPT} -p tcp --dport $((base + n * 10 + 0x10 % 7)) -j ACCEPT\n'
     f'{IPT} -p tcp --dport $(( n > 5 ? 1 : 2 )) -j ACCEPT\n'), [], {}, {}),
    ("functions-every-style", 'a() { ' + IPT + ' -p tcp --dport "$1" -j ACCEPT; }\n'
     'function b {\n  ' + IPT + ' -p tcp --dport $1 -j DROP\n}\n'
     'function c()\n{\n  local p=$1\n  shift\n  ' + IPT + ' -p udp --dport $p -m comment --comment "$*" -j ACCEPT\n'
     '  return 3\n  ' + IPT + ' -j DROP\n}\n'
     'a 22\nb 23\nc 53 x y || ' + IPT + ' -p udp --dport 54 -j ACCEPT\n', [], {}, {}),
    ("declarations", 'export A=192.0.2.1\nreadonly B=192.0.2.2\ndeclare C=192.0.2.3\ntypeset -a D=(192.0.2.4)\n'
     'f() { local A=192.0.2.9; declare C=192.0.2.8; ' + IPT + ' -s $A -j ACCEPT; ' + IPT + ' -s $C -j ACCEPT; }\n'
     'f\n' + IPT + ' -s $A -j DROP\n' + IPT + ' -s $B -j DROP\n' + IPT + ' -s $C -j DROP\n'
     + IPT + ' -s ${D[0]} -j DROP\nunset C\n' + IPT + ' -s ${C:-192.0.2.7} -j DROP\n', [], {}, {}),
    ("if-elif-else-with-arguments", 'if [ "$1" = start ]; then\n  ' + IPT + ' -j ACCEPT\n'
     'elif [ "$1" = stop ]; then ' + IPT + ' -j DROP\nelse\n  ' + IPT + ' -j REJECT\nfi\n'
     'if test -n "$2" -a "$2" -gt 3; then ' + IPT + ' -p tcp --dport $2 -j ACCEPT; fi\n', ["stop", "5"], {}, {}),
    ("file-tests-beside-the-script", '[ -f list.txt ] && ' + IPT + ' -j ACCEPT\n'
     '[ -f nothere.txt ] || ' + IPT + ' -j DROP\n[ -d . ] && ' + IPT + ' -j REJECT\n', [], {},
     {"list.txt": "x\n"}),
    ("case-every-form", 'allow() { ' + IPT + ' -p tcp --dport $1 -j ACCEPT; }\n'
     'case "$1" in\n  start|restart) allow 80 ;;\n  stop)\n    ' + IPT + ' -j DROP\n    ;;\n'
     '  *) allow 1 ;;\nesac\ncase $2 in x*) allow 2;; [0-9]) allow 3;; esac\n'
     'case a in a) allow 4 ;& b) allow 5 ;; c) allow 6 ;; esac\n', ["restart", "7"], {}, {}),
    ("while-until-for", 'i=0\nwhile [ $i -lt 3 ]; do ' + IPT + ' -p tcp --dport 10$i -j ACCEPT; i=$((i+1)); done\n'
     'until [ $i -le 0 ]; do i=$((i-1)); [ $i -eq 1 ] && continue; ' + IPT + ' -p tcp --dport 20$i -j ACCEPT; done\n'
     'for ((j=0; j<6; j+=2)); do ' + IPT + ' -p udp --dport 30$j -j ACCEPT; [ $j -ge 2 ] && break; done\n'
     'for k in {1..3}; do ' + IPT + ' -p udp --dport 40$k -j ACCEPT; done\n'
     'set -- 501 502\nfor k; do ' + IPT + ' -p udp --dport $k -j ACCEPT; done\n', [], {}, {}),
    ("double-brackets", 'ip=192.0.2.17\nif [[ $ip =~ ^192\\.0\\.2\\.([0-9]+)$ && ${BASH_REMATCH:-x} != y ]]; then '
     + IPT + ' -s $ip -j ACCEPT; fi\n[[ $ip == 192.* ]] && ' + IPT + ' -j DROP\n'
     '[[ $ip == "192.*" ]] || ' + IPT + ' -j REJECT\n[[ -z $none && ! -n "" ]] && ' + IPT + ' -j LOG\n'
     '[[ 10 -gt 9 ]] && ' + IPT + ' -p tcp --dport 10 -j ACCEPT\n', [], {}, {}),
    ("here-documents-and-strings", 'T=filter\niptables-restore <<EOF\n*$T\n:INPUT DROP [0:0]\n'
     '-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\nEOF\n'
     "ip6tables-restore <<'EOF'\n*filter\n-A INPUT -s 2001:db8::1 -j ACCEPT\nCOMMIT\nEOF\n"
     'read a b <<< "192.0.2.1 192.0.2.2"\n' + IPT + ' -s $b -j DROP\n', [], {}, {}),
    ("pipelines-and-lists", 'echo "192.0.2.1 192.0.2.2" | while read x y; do ' + IPT + ' -s $y -j DROP; done\n'
     'iptables -N X 2>/dev/null || true\niptables -N X 2>/dev/null || ' + IPT + ' -j X\n'
     'iptables -A NOCHAIN -j DROP 2>/dev/null && ' + IPT + ' -j REJECT\n! false && ' + IPT + ' -j LOG\n', [], {}, {}),
    ("source-relative", '. ./conf.sh\nsource sub/more.sh 443\n' + IPT + ' -s $ADMIN -j ACCEPT\n', [], {},
     {"conf.sh": "ADMIN=192.0.2.44\n", "sub/more.sh": IPT + " -p tcp --dport $1 -j ACCEPT\n"}),
    ("arguments-and-environment", IPT + ' -i ${1:-eth0} -j ACCEPT\n' + IPT + ' -m comment --comment "$MODE $#" -j ACCEPT\n'
     'shift\n' + IPT + ' -m comment --comment "$@" -j ACCEPT\n', ["eth1", "second"], {"MODE": "strict"}, {}),
    ("command-prefixes", 'command iptables -A INPUT -j ACCEPT\nenv iptables -A INPUT -j DROP\n'
     'nohup iptables -A INPUT -j REJECT > /dev/null\nX=1 iptables -A INPUT -j LOG\n'
     'eval "iptables -A INPUT -p tcp --dport \\$((20+2)) -j ACCEPT"\n'
     "bash -c 'iptables -A INPUT -p tcp --dport $1 -j ACCEPT' x 23\n"
     "sh -c \"iptables -A INPUT -p tcp --dport 24 -j ACCEPT\"\nIPT=$(command -v iptables)\n"
     "$IPT -A INPUT -p tcp --dport 25 -j ACCEPT\nexec iptables -A INPUT -p tcp --dport 26 -j ACCEPT\n"
     + IPT + " -j DROP\n", [], {}, {}),
    ("loops-over-files", 'while read ip; do ' + IPT + ' -s $ip -j DROP; done < list.txt\n'
     'for ip in $(cat list.txt); do ' + IPT + ' -d $ip -j DROP; done\n'
     'for ip in $(< list.txt); do ' + IPT + ' -s $ip -j REJECT; done\n'
     'grep -v "^#" ports.txt | cut -d: -f1 | while read p; do ' + IPT + ' -p tcp --dport $p -j ACCEPT; done\n'
     'for p in $(grep -v "^#" ports.txt | cut -d: -f1); do ' + IPT + ' -p udp --dport $p -j ACCEPT; done\n', [], {},
     {"list.txt": "192.0.2.1\n192.0.2.2\n", "ports.txt": "# ports\n80:web\n443:tls\n"}),
    ("aligned-columns-tabs-continuations", ('IPTABLES=iptables\nCH=MYCH\ncom="-m comment --comment"\n'
     '$IPTABLES -N $CH\n$IPTABLES -A $CH -j ACCEPT\n$IPTABLES --flush     $CH\n'
     '$IPTABLES -A INPUT   -p tcp   --dport 22\t-j $CH\t$com "ssh in"\n'
     '$IPTABLES -N $CH 2>/dev/null \\\n  || $IPTABLES -A $CH -j DROP\n'), [], {}, {}),
    ("set-e-stops-at-a-failure", 'set -e\n' + IPT + ' -j ACCEPT\niptables -A NOCHAIN -j DROP 2>/dev/null\n'
     + IPT + ' -j DROP\n', [], {}, {}),
    ("exit-stops", IPT + ' -j ACCEPT\n[ -z "$1" ] && exit 0\n' + IPT + ' -j DROP\n', [], {}, {}),
    ("ifs-and-read-fields", 'IFS=,\nL="192.0.2.1,192.0.2.2"\nfor ip in $L; do ' + IPT + ' -s $ip -j DROP; done\n'
     'unset IFS\nwhile IFS=: read -r name port; do ' + IPT + ' -p tcp --dport $port -m comment --comment $name '
     '-j ACCEPT; done < ports.txt\n', [], {}, {"ports.txt": "web:80\nmail:25\n"}),
    ("printf-and-echo", 'printf -v P "%d" 8080\n' + IPT + ' -p tcp --dport $P -j ACCEPT\n'
     'C=$(printf "%s-%s" a b)\n' + IPT + ' -m comment --comment "$C" -j ACCEPT\n'
     'E=$(echo -n "x  y")\n' + IPT + ' -m comment --comment "$E" -j ACCEPT\n', [], {}, {}),
    ("ip6tables-and-families", 'for ip in 2001:db8::1 2001:db8::2; do ip6tables -A INPUT -s $ip -j DROP; done\n'
     + IPT + ' -s 192.0.2.1 -j DROP\n', [], {}, {}),
    ("check-then-add", 'for i in 1 2; do\n  iptables -C INPUT -j ACCEPT 2>/dev/null || ' + IPT + ' -j ACCEPT\ndone\n'
     'if ! iptables -C INPUT -j DROP 2>/dev/null; then ' + IPT + ' -j DROP; fi\n', [], {}, {}),
    ("nested-quotes-in-expansions", 'x=""\n' + IPT + ' -m comment --comment "${x:-"a b"}" -j ACCEPT\n'
     'v=a/b/c\n' + IPT + ' -m comment --comment "${v//\\//-}" -j ACCEPT\n'
     'y="$(echo "$(echo inner)")"\n' + IPT + ' -m comment --comment "$y" -j ACCEPT\n', [], {}, {}),
    ("listing-read-back-and-xargs", ('[[ $EUID -ne 0 ]] && exit 1\n[ "$(id -u)" != 0 ] && exit 1\niptables -N zt-in\n'
     'iptables -A INPUT -j ACCEPT -m comment --comment zt-vl2\n'
     'iptables -A zt-in -i eth0 -m comment --comment zt-vl2 -j ACCEPT\niptables -A zt-in -j RETURN\n'
     'iptables -t filter -S | grep zt-vl2 | cut -d " " -f 2- | xargs -rL1 iptables -t filter -D\n'
     'iptables -S | grep -q "zt-in" && iptables -A OUTPUT -j ACCEPT\n'), [], {}, {}),
    ("subshells-and-groups", 'X=1\n( X=2; ' + IPT + ' -m comment --comment "in$X" -j ACCEPT )\n'
     '{ ' + IPT + ' -m comment --comment "out$X" -j ACCEPT; }\nY=$( X=3; echo $X )\n'
     + IPT + ' -m comment --comment "$X$Y" -j ACCEPT\n', [], {}, {}),
]


def _save_lines(text: str) -> list[str]:
    """A save's lines without comment lines and counters."""
    return [re.sub(r"\[\d+:\d+\]$", "[0:0]", ln.rstrip()) for ln in text.splitlines()
            if ln.strip() and not ln.startswith("#")]


def _kernel(netns, tmp: Path, script: Path, args: list[str], env: dict[str, str]) -> dict[Family, list[str]]:
    netns.run(["env", "-C", str(tmp), *(f"{k}={v}" for k, v in env.items()), "bash", str(script), *args],
              check=False)
    return {fam: _save_lines(netns.run([cmd]).stdout)
            for fam, cmd in ((Family.IPV4, "iptables-save"), (Family.IPV6, "ip6tables-save"))}


@pytest.mark.parametrize("name, script, args, env, files", CASES, ids=[c[0] for c in CASES])
def test_construct_reads_as_bash_runs_it(netns, tmp_path, name, script, args, env, files):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    path = tmp_path / "script.sh"
    path.write_text("#!/bin/bash\n" + script)
    kernel = _kernel(netns, tmp_path, path, args, env)
    b = read_script(path.read_text(), str(path), how=Invocation(args, env))
    for fam, lines in kernel.items():
        ours = _save_lines(render_save(b.rulesets[fam])) if fam in b.rulesets else []
        assert "\n".join(ours) == "\n".join(lines)
    assert [str(d) for d in b.diagnostics if d.severity != "note" and d.code not in EXPECTED] == [], \
        "stockade warned about a script it read right"
