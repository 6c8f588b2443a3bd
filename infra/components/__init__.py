"""Constructs: each one logical unit with typed, keyword-only properties (see docs/architecture.md)."""
