"""Hypothesis settings for the fuzz tests: a fixed, derandomized run in CI (fast and repeatable);
``NODEGEN_FUZZ_EXAMPLES=N`` runs N random examples per test instead (a longer hunt, on demand),
and ``NODEGEN_FUZZ_SEED`` makes that hunt repeatable."""

from __future__ import annotations

import os

from hypothesis import settings


def fuzz_settings(default_examples: int) -> settings:
    hunt = int(os.environ.get("NODEGEN_FUZZ_EXAMPLES", "0") or 0)
    if hunt:
        return settings(max_examples=hunt, deadline=None, derandomize=False, database=None)
    return settings(max_examples=default_examples, deadline=None, derandomize=True, database=None)
