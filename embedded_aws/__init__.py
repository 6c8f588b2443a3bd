"""Local mode: the synthesized CDK app deployed into an embedded AWS (moto) and its
functions run in this process. See docs/local-mode.md."""
