"""Infrastructure of jukinet: deployment configuration, constructs and per-tier stacks (AWS CDK).

``config`` is the one typed deployment object; ``naming`` derives every cross-tier name,
ARN and URL from it; ``composition.build`` turns a configuration into stacks. Nothing here
reads the network or AWS credentials during synth.
"""
