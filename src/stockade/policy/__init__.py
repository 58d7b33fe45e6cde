"""The policy file: its schema, the service catalogue, and its compiler to the netfilter model."""
