"""Make a mismatched torchvision importable.

Why: the only torchvision on the registry that matches torch 2.13.0 is a CUDA build whose
compiled ops cannot load against the CPU torch. Its Python side then registers fake kernels
for ``torchvision::nms`` / ``torchvision::qnms`` and fails with
``RuntimeError: operator torchvision::nms does not exist``. transformers imports torchvision
whenever it is installed, which breaks diffusers, transformers and spandrel imports.

The fix defines those two operator schemas in a ``torch.library`` fragment before anything
imports torchvision. Where torchvision's compiled library loads normally, or torchvision is not
installed, this does nothing; ``NODEGEN_TORCHVISION_REPAIR=0`` turns it off. The install avoids the
problem where it can (``.ci/constraints.txt`` pins torch and torchvision so pip never replaces the
CPU torch); the README's "Installing" notes say why the repair remains.
"""

from __future__ import annotations

import importlib.util
import os

_applied = False


def apply() -> bool:
    """Apply the fix once; return True if the schemas had to be defined."""
    global _applied
    if _applied:
        return False
    _applied = True
    if os.environ.get("NODEGEN_TORCHVISION_REPAIR", "1") == "0":
        return False
    if importlib.util.find_spec("torchvision") is None:
        return False
    import torch

    try:
        # Present when torchvision's C++ ops are registered (a working install).
        torch.ops.torchvision.nms  # noqa: B018
        return False
    except (AttributeError, RuntimeError):
        pass
    spec = importlib.util.find_spec("torchvision")
    # Try loading torchvision's own compiled library first (works on a matching build).
    try:
        import glob

        pkg_dir = os.path.dirname(spec.origin)
        libs = glob.glob(os.path.join(pkg_dir, "_C*.so"))
        if libs:
            torch.ops.load_library(libs[0])
            torch.ops.torchvision.nms  # noqa: B018
            return False
    except Exception:  # noqa: BLE001 - any failure means the library does not load here
        pass
    global _lib
    _lib = torch.library.Library("torchvision", "FRAGMENT")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return True


_lib = None
