"""Talking to the real system: backend detection, stockade's part of the live ruleset, atomic
transactions, the detached rollback timer, persistence and status. Every function takes a Host,
which is this machine or a named network namespace (`--netns`)."""
