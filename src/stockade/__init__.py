"""stockade: a host firewall for Linux servers that proves what it does."""
