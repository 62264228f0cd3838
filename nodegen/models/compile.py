"""torch.compile for a MODEL's denoiser (ComfyUI's TorchCompileModel, comfy_extras/nodes_torch_compile.py).

The MODEL option ``torch_compile`` names a backend ("inductor" or "cudagraphs"). For a run of that
MODEL (:meth:`nodegen.models.objects.DiffusionModel.use`) the module's ``forward`` is replaced by a
compiled one and restored after, so the original MODEL, which shares the module, keeps running
uncompiled. The compiled forward is made once per (module, backend) and kept while the module lives,
so later runs reuse torch's compiled graphs (torch recompiles by itself where its guards fail, e.g.
when other patches swap attention processors).

Unlike ComfyUI, a compile that fails (at the first call: inductor without a working C++ compiler,
an unsupported operation; later: a recompile torch's compile errors stop) does not fail the run: a
warning naming TorchCompileModel and the backend is logged and the module runs uncompiled from then on.
"cudagraphs" on a CPU does not fail: torch skips the CUDA graphs (with its own warning) and runs the
captured graphs.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

log = logging.getLogger(__name__)

BACKENDS = ("inductor", "cudagraphs")
#: torch backend (a name or a backend callable) used for a node backend name; tests map the node's
#: names here onto one running dynamo's graphs as captured, like torch's "eager" (compiling a real
#: model with inductor takes minutes on a CPU).
TORCH_BACKENDS: dict[str, Any] = {}


class CompiledForward:
    """``type(module).forward`` compiled with one backend; falls back to the uncompiled forward for
    good when the first call fails. Holds no reference to the module (it is a weak cache key)."""

    def __init__(self, module: torch.nn.Module, backend: str) -> None:
        self.backend = backend
        self.eager: Callable[..., Any] = type(module).forward
        self.state = "untried"  # then "compiled" or "failed"
        try:  # torch.compile itself refuses where dynamo is unsupported (some Python versions)
            self.compiled: Callable[..., Any] = torch.compile(self.eager, backend=TORCH_BACKENDS.get(backend, backend))
        except Exception as e:  # noqa: BLE001 - say why, run uncompiled
            self._fail(e, module)

    def _fail(self, e: BaseException, module: torch.nn.Module) -> None:
        self.state = "failed"
        log.warning("TorchCompileModel: torch.compile with backend %r failed (%s); running %s uncompiled",
                    self.backend, _cause(e), type(module).__name__)

    def __call__(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if self.state == "failed":
            return self.eager(module, *args, **kwargs)
        # the first call: any error (whatever the backend raises); later ones: torch's compile errors
        # (a recompile, when guards fail, can fail too)
        failures = Exception if self.state == "untried" else torch._dynamo.exc.TorchDynamoException
        try:
            out = self.compiled(module, *args, **kwargs)
        except failures as e:
            self._fail(e, module)
            return self.eager(module, *args, **kwargs)
        self.state = "compiled"
        return out


def _cause(e: BaseException) -> str:
    """The innermost cause of ``e`` (torch wraps a backend's error), as ``Type: first line``."""
    while (inner := getattr(e, "inner_exception", None) or e.__cause__) is not None:
        e = inner
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, CompiledForward]] = weakref.WeakKeyDictionary()


def compiled_forward(module: torch.nn.Module, backend: str) -> CompiledForward:
    """The module's compiled forward for ``backend``, made on first request and reused after."""
    if backend not in BACKENDS:
        raise ValueError(f"TorchCompileModel: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    per_backend = _CACHE.setdefault(module, {})
    if backend not in per_backend:
        per_backend[backend] = CompiledForward(module, backend)
    return per_backend[backend]


@contextmanager
def installed(module: torch.nn.Module, backend: str | None) -> Iterator[None]:
    """Within the block, calls of ``module`` run its forward compiled with ``backend`` (the MODEL's
    ``torch_compile`` option; None: unchanged); its own forward is restored after."""
    if not backend:
        yield
        return
    fn = compiled_forward(module, backend)
    if "forward" in module.__dict__:  # an instance's own forward (a wrapper): compiling the class's would skip it
        log.warning("TorchCompileModel: %s has its own forward wrapper; running it uncompiled (backend %r)",
                    type(module).__name__, backend)
        yield
        return

    def forward(*args: Any, **kwargs: Any) -> Any:
        return fn(module, *args, **kwargs)

    module.forward = forward
    try:
        yield
    finally:
        del module.forward
