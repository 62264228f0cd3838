"""Import only the parts of diffusers a run uses.

Why: importing one diffusers model class runs the ``__init__`` of every package on its path, and
two of them import whole families: ``diffusers.models.unets`` imports every UNet (video, motion,
Kandinsky, ...) and ``diffusers.models.transformers`` imports ~60 transformer models, one of which
pulls ``diffusers.hooks`` and with it peft (when installed); ``diffusers.models.autoencoders``
imports every autoencoder (one pulls transformers' image processors). In a fresh process that cost more
than the whole image (measured here: 3-8 s of imports before the first model node could run).

:func:`defer_package_inits` registers those packages as modules whose ``__init__`` has not run
yet: importing a submodule (``diffusers.models.unets.unet_2d_condition``) works at once, and the
first time anything asks the package itself for a name it does not have yet (``from
diffusers.models.transformers import SD3Transformer2DModel``), the real ``__init__`` runs in place
and the name is found. Nothing changes for code that uses the packages normally; it only happens
later. Where diffusers was already imported, or the layout differs, nothing is done.

:func:`apply` also imports the diffusers modules that import transformers for nothing nodegen
uses with transformers hidden (:func:`import_without_transformers`), and switches diffusers' peft
backend off (peft cost 1.5-3 s to import, and diffusers imports it at its first UNet forward when
the backend is on). nodegen applies LoRAs
itself and never uses diffusers' peft integration, but a program that imports nodegen as a
library may: so all of this happens only in nodegen's own processes (the ``nodegen`` command,
``main.py``, the editor), which call :func:`enable` at start. The model loaders call
:func:`apply` before they import diffusers; it does nothing unless enabled.
Set ``NODEGEN_FULL_IMPORTS=1`` to switch it off.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

_enabled = False


def enable() -> None:
    """Called by nodegen's own entry points: lean imports in this process."""
    global _enabled
    _enabled = True


def apply() -> list[str]:
    """Before diffusers is imported: defer the heavy package inits and switch the peft backend
    off, if :func:`enable` was called. Returns the packages deferred."""
    global _enabled
    if not _enabled:
        return []
    _enabled = False  # once
    deferred = defer_package_inits()
    if deferred:
        _optional_backends_off()
        import_without_transformers()
    return deferred


def _optional_backends_off() -> None:
    """diffusers' peft backend (LoRA through peft) and its scipy-based scheduler options (beta
    sigmas; 1 s of scipy.stats imported by ``single_file_utils``' scheduler imports): nodegen
    uses neither (its samplers and schedules are its own)."""
    import diffusers.utils
    from diffusers.utils import constants, import_utils

    if "peft" not in sys.modules:
        import_utils._peft_available = False
        constants.USE_PEFT_BACKEND = False
        diffusers.utils.USE_PEFT_BACKEND = False
    if "scipy.stats" not in sys.modules:
        import_utils._scipy_available = False


#: diffusers modules that import transformers at module level for features nodegen does not use
#: from them: transformers' quantization configs (pipeline quantization), ``PreTrainedModel``
#: (pipeline LoRA on transformers text encoders), ``AutoImageProcessor`` (converting image-variation
#: pipelines). Every diffusers model class imports all three.
TRANSFORMERS_USERS = ("diffusers.quantizers.pipe_quant_config", "diffusers.loaders.lora_base",
                      "diffusers.loaders.single_file_utils")


def import_without_transformers() -> bool:
    """Import :data:`TRANSFORMERS_USERS` with transformers hidden (nodegen's text encoders and
    tokenizers are its own; transformers' package import alone costs ~0.4 s, its model base class
    ~1.5 s more: sympy, scipy, ``torch.distributed``). Afterwards transformers imports as usual
    (T5, CLIP guidance, diffusers pipelines): only these modules lack the three names above. The
    packages whose import tables depend on transformers being installed (``diffusers``,
    ``diffusers.loaders``) are imported first, with it visible. Returns whether it was done."""
    if "transformers" in sys.modules or any(m in sys.modules for m in TRANSFORMERS_USERS):
        return False
    import diffusers.loaders  # noqa: F401 - lazy: builds its import table with transformers visible
    from diffusers.utils import import_utils

    available = import_utils._transformers_available
    import_utils._transformers_available = False
    sys.modules["transformers"] = None  # type: ignore[assignment] - "import transformers" raises ImportError
    try:
        for name in TRANSFORMERS_USERS:
            importlib.import_module(name)
    finally:
        if sys.modules.get("transformers", 0) is None:
            del sys.modules["transformers"]
        import_utils._transformers_available = available
    return True


#: Packages whose ``__init__`` imports far more than one model needs.
DEFERRED = ("diffusers.models.unets", "diffusers.models.transformers", "diffusers.models.autoencoders")


class _DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` runs on the first lookup of a name it lacks."""

    def __getattr__(self, name: str):
        if name.startswith("__") or self.__dict__.get("_nodegen_init_done"):
            raise AttributeError(name)
        self.__dict__["_nodegen_init_done"] = True
        spec = self.__spec__
        code = spec.loader.get_code(spec.name)
        exec(code, self.__dict__)  # noqa: S102 - the package's own __init__, run late
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {spec.name!r} has no attribute {name!r}") from None


def _defer(name: str) -> bool:
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None or spec.loader is None:
        return False
    module = _DeferredPackage(name)
    module.__spec__ = spec
    module.__path__ = list(spec.submodule_search_locations)
    module.__file__ = spec.origin
    module.__package__ = name
    module.__loader__ = spec.loader
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return True


def defer_package_inits() -> list[str]:
    """Defer the ``__init__`` of :data:`DEFERRED` (parents are imported normally, and cheaply:
    diffusers' own top level is lazy). Returns the packages deferred."""
    if os.environ.get("NODEGEN_FULL_IMPORTS") or "diffusers.models" in sys.modules:
        return []
    if importlib.util.find_spec("diffusers") is None:
        return []
    import diffusers.models  # noqa: F401 - lazy: imports no model yet

    return [name for name in DEFERRED if _defer(name)]
