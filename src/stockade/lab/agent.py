"""Real TCP connections from a lab host, driven by the lab over JSON lines.

Run inside a host namespace as `python -m stockade.lab.agent`. Requests and answers:
- `{"connect": [SRC, DST, PORT], "timeout": S}` -> `{"result": R, "sport": N}`: the kernel's own
  handshake from SRC; R is `open` (connected), `refused` (RST or ICMP port unreachable),
  `unreachable` (ICMP host/net/admin unreachable) or `timeout`. The socket is then aborted
  (SO_LINGER 0: one RST), so a connection costs exactly SYN, ACK, RST from this side.
- `{"hold": [SRC, DST, PORT], "timeout": S}` -> the same, but the connection is kept as `id`.
- `{"echo": ID, "timeout": S}` -> `{"result": "alive"|"dead"}`: send one byte on a held
  connection and wait for the server to echo it; then abort it.
"""
from __future__ import annotations

import errno
import json
import socket
import struct
import sys

REFUSED = {errno.ECONNREFUSED, errno.ECONNRESET}
UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM, errno.EPROTO}


def _abort(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _connect(src: str, dst: str, port: int, timeout: float) -> tuple[str, socket.socket | None, int]:
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((src, 0))
    sport = s.getsockname()[1]
    s.settimeout(timeout)
    try:
        s.connect((dst, port))
    except TimeoutError:
        result = "timeout"
    except OSError as e:
        result = "refused" if e.errno in REFUSED else "unreachable" if e.errno in UNREACHABLE else f"error {e.errno}"
    else:
        return "open", s, sport
    _abort(s)
    return result, None, sport


def main() -> int:
    held: dict[int, socket.socket] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        timeout = float(req.get("timeout", 0.3))
        if "connect" in req or "hold" in req:
            src, dst, port = req.get("connect") or req["hold"]
            result, s, sport = _connect(src, dst, int(port), timeout)
            reply = {"result": result, "sport": sport}
            if s is not None and "hold" in req:
                held[sport] = s
                reply["id"] = sport
            elif s is not None:
                _abort(s)
        else:
            s = held.pop(int(req["echo"]))
            s.settimeout(timeout)
            try:
                s.sendall(b"x")
                alive = s.recv(1) == b"x"
            except OSError:
                alive = False
            _abort(s)
            reply = {"result": "alive" if alive else "dead"}
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
