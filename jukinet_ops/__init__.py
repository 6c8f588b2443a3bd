"""Operator tooling around the deployed system: the ``jukinet`` command, the embedded AWS
(local mode), the demo and the reports. Not deployed to Lambda."""
