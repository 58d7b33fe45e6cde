"""Bash, read with the tree-sitter-bash grammar and run statically (see run.py)."""
