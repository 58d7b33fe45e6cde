"""Semantics on the model: conntrack, packet traversal (simulate), symbolic analysis."""
