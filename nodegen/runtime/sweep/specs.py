"""``--over NODE.INPUT=SPEC``: the values one input takes in a sweep.

SPEC forms: a range ``1..10`` (inclusive; ``1..100:10`` with a step; numbers with a ``.`` make a
float range), a list ``a,b,c``, ``@file.txt`` (one value per line; blank lines and ``#`` comments
skipped), ``random:N`` (N random seeds; the manifest records them so a resumed sweep reuses them).
Values are text here; the input's type decides how each is read (see :mod:`nodegen.runtime.overrides`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

SEED_MAX = 2**32 - 1
_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*(?::\s*(-?[\d.]+)\s*)?$")


class SpecError(ValueError):
    pass


@dataclass
class Over:
    key: str  # NODE.INPUT
    spec: str  # as typed
    values: list[str]  # as text

    @property
    def is_random(self) -> bool:
        return self.spec.strip().startswith("random:")


def parse_over(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise SpecError(f"--over {item!r}: expected NODE.INPUT=SPEC")
    key, spec = item.split("=", 1)
    if "." not in key:
        raise SpecError(f"--over {item!r}: expected NODE.INPUT=SPEC (NODE is a node id or a unique title)")
    if not spec.strip():
        raise SpecError(f"--over {item!r}: the SPEC is empty")
    return key.strip(), spec


def expand(spec: str, base_dir: str | Path = ".", rng: random.Random | None = None) -> list[str]:
    """The values of one SPEC, as text."""
    text = spec.strip()
    if text.startswith("@"):
        path = Path(base_dir) / text[1:]
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise SpecError(f"{spec!r}: cannot read {path}: {e.strerror or e}") from e
        values = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not values:
            raise SpecError(f"{spec!r}: {path} holds no values")
        return values
    if text.startswith("random:"):
        count = text[len("random:"):]
        if not count.isdigit() or int(count) < 1:
            raise SpecError(f"{spec!r}: expected random:N with N a positive whole number")
        rng = rng or random.SystemRandom()
        return [str(rng.randint(0, SEED_MAX)) for _ in range(int(count))]
    m = _RANGE.match(text)
    if m:
        return _range(spec, *m.groups())
    return [v.strip() for v in spec.split(",")]


def _range(spec: str, start: str, stop: str, step: str | None) -> list[str]:
    try:
        a, b = Decimal(start), Decimal(stop)
        s = Decimal(step) if step is not None else Decimal(1 if b >= a else -1)
    except InvalidOperation as e:
        raise SpecError(f"{spec!r}: not a range of numbers") from e
    if s == 0 or (b - a) * s < 0:
        raise SpecError(f"{spec!r}: the step {s} never reaches {b} from {a}")
    n = int((b - a) / s) + 1
    if n > 1_000_000:
        raise SpecError(f"{spec!r}: {n} values is more than a sweep should hold")
    is_float = any("." in x for x in (start, stop, step or ""))
    return [str(float(a + i * s)) if is_float else str(int(a + i * s)) for i in range(n)]
