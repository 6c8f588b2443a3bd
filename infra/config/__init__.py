"""The deployment configuration (moved from ``infra/config.py``; split by concern next)."""

from .people import *  # noqa: F403
