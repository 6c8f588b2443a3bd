"""Use cases: what a tier does with a message or a file, over the domain core and adapters."""
