"""Front ends: iptables-save dumps and iptables shell scripts into the model."""
