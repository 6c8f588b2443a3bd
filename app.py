#!/usr/bin/env python3
"""Composition root: `cdk synth -c deployment=<name>` (default nagano-demo; see infra/config.py)."""

import aws_cdk as cdk

from infra.composition import build
from infra.config import load_deployment

app = cdk.App(analytics_reporting=False)
build(app, load_deployment(app.node.try_get_context("deployment")))
app.synth()
