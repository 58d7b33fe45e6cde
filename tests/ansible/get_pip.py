"""Stand-in for the get-pip bootstrap ansible-test downloads from ci-files.testing.ansible.com, which
cannot be reached here: pip from the interpreter's own ensurepip, then the pip version ansible-test
asks for from the package index. ansible-test passes the process only HOME, PATH and LC_ALL, so the
CA bundle is named explicitly (PIP_CERT, else the Debian bundle)."""
import ensurepip
import os
import subprocess
import sys

CERT = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]  # get-pip's own options
subprocess.check_call([sys.executable, "-m", "pip", "install", "--cert", CERT, *args],
                      env=dict(os.environ, SSL_CERT_FILE=CERT))
