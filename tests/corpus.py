"""Where the shared test data lives: ../shared beside the clone (or $STOCKADE_SHARED)."""
import os
from pathlib import Path

SHARED = Path(os.environ.get("STOCKADE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
CORPUS = SHARED / "corpus"
SEEDS = SHARED / "seeds"
IPT_TESTS = CORPUS / "iptables-tests" / "extensions"
NET_NETWORK = CORPUS / "net-network"
SEMANTICS = CORPUS / "iptables-semantics"
