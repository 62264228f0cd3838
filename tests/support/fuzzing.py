"""Hypothesis settings for the fuzz tests: a fixed, derandomized run in CI (fast and repeatable);
``NODEGEN_FUZZ_EXAMPLES=N`` runs N random examples per test instead (a longer hunt, on demand; a
failure prints the example, and Hypothesis's ``@reproduce_failure`` line replays it)."""

from __future__ import annotations

import os

from hypothesis import settings


def fuzz_settings(default_examples: int) -> settings:
    hunt = int(os.environ.get("NODEGEN_FUZZ_EXAMPLES", "0") or 0)
    if hunt:
        return settings(max_examples=hunt, deadline=None, derandomize=False, database=None)
    return settings(max_examples=default_examples, deadline=None, derandomize=True, database=None)


# -- strategies --------------------------------------------------------------------------------------

import copy  # noqa: E402
import signal  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

from hypothesis import strategies as st  # noqa: E402

#: Scalars chosen to hit edges: huge and negative numbers, non-finite floats, odd text.
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, 1, -1, 7, 64, 2 ** 31, 2 ** 63, -(2 ** 63), 10 ** 30, 100000]),
    st.integers(-1000, 100000),
    st.sampled_from([0.0, -0.0, 1e308, -1e-308, float("inf"), float("-inf"), float("nan"), 0.5]),
    st.sampled_from(["", "x", "1", "../../etc/passwd", "/dev/zero", "a\nb", "\u202eevil", "\x00",
                     "from", "nodes", "inputs", "3", "image", "samples", "LATENT", "IMAGE", "*", "x" * 5000]),
    st.text(max_size=12),
)

JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6) | st.sampled_from(
        ["from", "id", "type", "inputs", "links", "nodes", "widgets_values", "class_type", "link"]), inner,
        max_size=4)), max_leaves=12)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw, seeds: list[Any]) -> Any:
    """One of ``seeds`` with a few values replaced, deleted or duplicated (structure-aware fuzzing:
    it reaches the converters' inner code, which random JSON rarely does)."""
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "copy_sibling"]))
        if action == "replace":
            parent[key] = draw(JSON)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, list) and parent:
            parent[key] = copy.deepcopy(draw(st.sampled_from(parent)))
        elif isinstance(parent, dict) and parent:
            parent[key] = copy.deepcopy(parent[draw(st.sampled_from(sorted(parent, key=str)))])
    return doc


class FuzzTimeout(BaseException):
    """Raised when one fuzz example runs too long (a hang)."""


@contextmanager
def time_limit(seconds: float):
    """Fail the example (FuzzTimeout) when its body runs longer than ``seconds``."""
    def alarm(_sig, _frame):
        raise FuzzTimeout(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
