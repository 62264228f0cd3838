"""The output cache: node outputs by signature, kept on the device that produced them.

Each entry's bytes are counted per device (``"cpu"``, ``"cuda:0"``, ...). Every device has a byte
budget; when a device is over budget, its least-recently-used entries are moved to host memory
("spilled", if the host budget has room) or dropped. Entries only ever hold complete results.
Model objects (which the model manager owns and budgets) count as zero bytes here.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BUDGETS = {"cpu": 4 * 1024**3, "cuda": 8 * 1024**3}


@dataclass
class Entry:
    outputs: dict[str, Any]
    ui: dict
    sizes: dict[str, int] = field(default_factory=dict)


def _device_key(dev: Any) -> str:
    text = str(dev)
    return "cpu" if text == "cpu" else text if ":" in text else f"{text}:0"


def measure(value: Any, sizes: dict[str, int], _depth: int = 0) -> None:
    """Add the bytes of the tensors/arrays/images in ``value`` to ``sizes`` by device."""
    if value is None or isinstance(value, (int, float, str, bool)) or _depth > 6:
        return
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        key = _device_key(value.device)
        sizes[key] = sizes.get(key, 0) + value.element_size() * value.nelement()
        return
    hook = getattr(value, "cache_nbytes", None)  # objects that manage their own memory
    if callable(hook):
        for dev, n in hook().items():
            sizes[dev] = sizes.get(dev, 0) + int(n)
        return
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        sizes["cpu"] = sizes.get("cpu", 0) + int(value.nbytes)
        return
    if isinstance(value, dict):
        for v in value.values():
            measure(v, sizes, _depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            measure(v, sizes, _depth + 1)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            measure(getattr(value, name, None), sizes, _depth + 1)
    elif type(value).__module__.startswith("PIL"):
        w, h = getattr(value, "size", (0, 0))
        sizes["cpu"] = sizes.get("cpu", 0) + w * h * len(value.getbands())


def to_host(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with its tensors moved to the CPU (containers rebuilt)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.to("cpu")
    if _depth > 6:
        return value
    hook = getattr(value, "cache_to_host", None)
    if callable(hook):
        return hook()
    if isinstance(value, dict):
        return {k: to_host(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [to_host(v, _depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(to_host(v, _depth + 1) for v in value)
    return value


class OutputCache:
    """LRU cache of node outputs with per-device byte budgets.

    ``budgets`` maps a device kind (``"cpu"``, ``"cuda"``) or a device (``"cuda:1"``) to bytes.
    """

    def __init__(self, budgets: dict[str, int] | None = None, spill_to_host: bool = True) -> None:
        self.budgets = dict(DEFAULT_BUDGETS)
        if budgets:
            self.budgets.update(budgets)
        self.spill_to_host = spill_to_host
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.usage: dict[str, int] = {}
        self.evictions = 0
        self.spills = 0

    def budget(self, device: str) -> int:
        if device in self.budgets:
            return self.budgets[device]
        return self.budgets.get(device.split(":")[0], DEFAULT_BUDGETS.get(device.split(":")[0], 0))

    def __contains__(self, sig: str) -> bool:
        return sig in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sig: str) -> Entry | None:
        entry = self._entries.get(sig)
        if entry is not None:
            self._entries.move_to_end(sig)
        return entry

    def put(self, sig: str, outputs: dict[str, Any], ui: dict | None = None) -> Entry:
        old = self._entries.pop(sig, None)
        if old is not None:
            self._account(old.sizes, -1)
        sizes: dict[str, int] = {}
        measure(outputs, sizes)
        entry = Entry(outputs, dict(ui or {}), sizes)
        self._entries[sig] = entry
        self._account(sizes, +1)
        for dev in list(sizes):
            self._enforce(dev, protect=sig)
        return entry

    def _account(self, sizes: dict[str, int], sign: int) -> None:
        for dev, n in sizes.items():
            self.usage[dev] = self.usage.get(dev, 0) + sign * n

    def _enforce(self, device: str, protect: str | None = None) -> None:
        budget = self.budget(device)
        if self.usage.get(device, 0) <= budget:
            return
        for sig in list(self._entries):
            if self.usage.get(device, 0) <= budget:
                break
            entry = self._entries[sig]
            if entry.sizes.get(device, 0) == 0:
                continue
            if sig == protect and entry.sizes.get(device, 0) <= budget:
                continue
            if device != "cpu" and self.spill_to_host and \
                    self.usage.get("cpu", 0) + entry.sizes[device] <= self.budget("cpu"):
                self._account(entry.sizes, -1)
                entry.outputs = to_host(entry.outputs)
                entry.sizes = {}
                measure(entry.outputs, entry.sizes)
                self._account(entry.sizes, +1)
                self.spills += 1
            else:
                self.drop(sig)
                self.evictions += 1

    def drop(self, sig: str) -> None:
        entry = self._entries.pop(sig, None)
        if entry is not None:
            self._account(entry.sizes, -1)

    def clear(self) -> None:
        self._entries.clear()
        self.usage.clear()

    def stats(self) -> dict:
        return {"entries": len(self._entries), "usage": dict(self.usage),
                "budgets": dict(self.budgets), "evictions": self.evictions, "spills": self.spills}
