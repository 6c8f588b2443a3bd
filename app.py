#!/usr/bin/env python3
"""Composition root: `cdk synth -c deployment=<name> [-c today=YYYY-MM-DD]` (default nagano-demo;
see infra/config/deployments.py). `today` (JST) decides which contractors' roles are synthesized; it
defaults to today's date in Japan — the only place synthesis reads the clock."""

import datetime as dt

import aws_cdk as cdk

from infra.composition import build
from infra.config import ConfigError, load_deployment
from jukinet.clock import system_clock, today_jst

app = cdk.App(analytics_reporting=False)
day = app.node.try_get_context("today")
try:
    today = dt.date.fromisoformat(day) if day else today_jst(system_clock())
except ValueError:
    raise ConfigError(f"context 'today' must be YYYY-MM-DD, got {day!r}") from None
build(app, load_deployment(app.node.try_get_context("deployment")), today=today)
app.synth()
