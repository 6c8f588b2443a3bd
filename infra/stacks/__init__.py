"""Stacks: each composes constructs and wires grants; one per tier (the municipality tier in chunks)."""
