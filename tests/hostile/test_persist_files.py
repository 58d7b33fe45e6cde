"""Issue 14, High 3, Medium 9, Medium 12 and the file modes: what `persist` does to the files a
boot loads. The root is a small tmpfs in a private mount namespace where a full disk is needed."""
from __future__ import annotations

import os
import subprocess

import pytest

from stockade.kernel.netns import Netns

from .kernelkit import STOCKADE, SmallDisk, env, policies, stockade_in

pytestmark = pytest.mark.kernel

ADMIN_NFT = "#!/usr/sbin/nft -f\nflush ruleset\ntable inet admin {\n\tchain input {\n" \
            "\t\ttype filter hook input priority 10; policy accept;\n\t\tudp dport 1194 accept\n\t}\n}\n"


def _confirmed(ns, tmp_path, backend: str):
    old, _ = policies(tmp_path)
    st = tmp_path / "state"
    assert stockade_in(None, ["apply", str(old), "--netns", ns.name, "--confirm-timeout", "0", "--backend", backend],
                       st).returncode == 0
    return st


def _loads(conf_text: str, root) -> bool:
    with Netns() as ns:
        text = conf_text.replace('include "/etc/', f'include "{root}/etc/')
        return ns.run(["nft", "-f", "-"], input=text, check=False).returncode == 0


def test_nft_boot_config_loads_whenever_the_disk_fills(netns, tmp_path):
    """High 3: the disk fills right after persist's first change; the boot config must still load."""
    st = _confirmed(netns, tmp_path, "nftables")
    with SmallDisk(tmp_path / "root", "256k") as disk:
        conf = disk.path(disk.dir / "etc/nftables.conf")
        conf.parent.mkdir(parents=True)
        conf.write_text(ADMIN_NFT)
        os.chmod(conf, 0o755)
        first = disk.snapshot()
        with disk.full_from(lambda: disk.snapshot() != first):
            p = stockade_in(disk, ["persist", "--netns", netns.name, "--root", str(disk.dir)], st)
        assert "Traceback" not in p.stderr, p.stderr
        assert _loads(conf.read_text(), disk.path(disk.dir)), conf.read_text()
        assert "table inet admin" in conf.read_text()
        # with room again: the config is replaced (a new file renamed over it, never truncated in place)
        inode = conf.stat().st_ino
        p = stockade_in(disk, ["persist", "--netns", netns.name, "--root", str(disk.dir)], st)
        assert p.returncode == 0, p.stderr
        assert conf.stat().st_ino != inode and conf.stat().st_mode & 0o777 == 0o755
        assert _loads(conf.read_text(), disk.path(disk.dir))


def test_a_boot_config_that_would_not_load_is_not_written(netns, tmp_path):
    """High 3: checked by loading before it becomes the boot config."""
    st = _confirmed(netns, tmp_path, "nftables")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    broken = ADMIN_NFT.replace("udp dport 1194", "udp dport 1194 nosuchkeyword")
    (root / "etc/nftables.conf").write_text(broken)
    p = stockade_in(None, ["persist", "--netns", netns.name, "--root", str(root)], st)
    assert p.returncode == 2 and "do not load" in p.stderr, p.stderr
    assert (root / "etc/nftables.conf").read_text() == broken


def test_persist_keeps_the_admins_rules(netns, tmp_path):
    """Medium 9: rules.v4 is shared with the admin: their NAT and VPN rules stay, persisted again
    after they changed them, and stockade's block appears once per table."""
    st = _confirmed(netns, tmp_path, "iptables-nft")
    root = tmp_path / "root"
    (root / "etc/iptables").mkdir(parents=True)
    admin = ("*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 198.51.100.0/24 -j MASQUERADE\nCOMMIT\n"
             "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
             "-A INPUT -p udp -m udp --dport 1194 -j ACCEPT\nCOMMIT\n")
    v4 = root / "etc/iptables/rules.v4"
    v4.write_text(admin)
    assert stockade_in(None, ["persist", "--netns", netns.name, "--root", str(root)], st).returncode == 0
    v4.write_text(v4.read_text().replace("--dport 1194 -j ACCEPT", "--dport 1194 -j ACCEPT\n-A INPUT -p udp -m udp "
                                         "--dport 51820 -j ACCEPT"))
    assert stockade_in(None, ["persist", "--netns", netns.name, "--root", str(root)], st).returncode == 0
    text = v4.read_text()
    assert "MASQUERADE" in text and "--dport 1194" in text and "--dport 51820" in text
    assert all(t.count("# stockade begin") <= 1 for t in text.split("\n*")) and "stk-in" in text
    assert text.count("# stockade begin") == text.count("# stockade end") >= 1


def test_status_notices_a_removed_include_line(netns, tmp_path):
    """Medium 12."""
    st = _confirmed(netns, tmp_path, "nftables")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/nftables.conf").write_text(ADMIN_NFT)
    assert stockade_in(None, ["persist", "--netns", netns.name, "--root", str(root)], st).returncode == 0
    conf = root / "etc/nftables.conf"
    conf.write_text(conf.read_text().replace('include "/etc/stockade/stockade.nft"\n', ""))
    s = stockade_in(None, ["persist", "--status", "--netns", netns.name, "--root", str(root)], st)
    assert "not current" in s.stdout and "does not include" in s.stdout, s.stdout


def test_modes_do_not_come_from_the_umask(netns, tmp_path):
    st = _confirmed(netns, tmp_path, "iptables-nft")
    root = tmp_path / "root"
    root.mkdir()
    p = subprocess.run([STOCKADE, "persist", "--netns", netns.name, "--root", str(root)], env=env(st),
                       preexec_fn=lambda: os.umask(0), capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    modes = {str(f.relative_to(root)): f.stat().st_mode & 0o777 for f in root.rglob("*") if f.is_file()}
    assert modes["etc/systemd/system/stockade-restore.service"] == 0o644
    assert modes["etc/stockade/rules.v4"] == 0o600 and not any(m & 0o022 for m in modes.values()), modes


def test_remove_refuses_a_symlinked_boot_file_and_changes_nothing(netns, tmp_path):
    """`stockade remove` reads every boot file before it changes anything: a symlink it will not follow
    is an error, and stockade's part stays live."""
    st = _confirmed(netns, tmp_path, "iptables-nft")
    root = tmp_path / "root"
    (root / "etc/iptables").mkdir(parents=True)
    assert stockade_in(None, ["persist", "--netns", netns.name, "--root", str(root)], st).returncode == 0
    v4 = root / "etc/iptables/rules.v4"
    (tmp_path / "elsewhere").write_text(v4.read_text())
    v4.unlink()
    v4.symlink_to(tmp_path / "elsewhere")
    before = netns.run(["iptables-nft-save"]).stdout
    r = stockade_in(None, ["remove", "--netns", netns.name, "--root", str(root)], st)
    assert r.returncode == 2 and "symlink" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "stk-in" in netns.run(["iptables-nft-save"]).stdout
    assert [ln for ln in netns.run(["iptables-nft-save"]).stdout.splitlines() if not ln.startswith("#")] == \
        [ln for ln in before.splitlines() if not ln.startswith("#")]
    assert v4.is_symlink() and (tmp_path / "elsewhere").read_text().startswith("# stockade version")
