"""A small random-weight Chroma model with the real architecture (diffusers' ChromaTransformer2DModel,
a T5 encoder, Flux's 16-channel VAE), saved as people download it, built once per process.

``fixture(tmp)`` returns a namespace with the in-memory components (``transformer``, ``vae``,
``text_encoder``, ``tokenizer``, ``scheduler``), ``pipeline()`` (a fresh ChromaPipeline over them) and
files: ``diffusion_model`` (the transformer in lodestones' original key layout, as ComfyUI's
``models/diffusion_models`` holds it), ``diffusion_model_diffusers`` (diffusers' keys, a diffusers
folder's ``transformer`` weights), ``t5xxl`` (transformers keys) and ``vae_file`` (LDM keys, as
``ae.safetensors``).

The scheduler shifts every image size by mu = 1.15: ComfyUI's default for Chroma (ModelSamplingFlux
at 1024 px), so a workflow without a ModelSamplingFlux node equals the pipeline at 64 px.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import torch

from nodegen.compat import torchvision as torchvision_fix
from tests.support.fixtures import _randomize_, _tmpdir
from tests.support.flow_fixtures import T5_WIDTH, _save, _state, _vae, t5_config, t5_state

torchvision_fix.apply()

_CACHE: dict[str, SimpleNamespace] = {}
_LOCK = threading.Lock()
SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=1.15, max_shift=1.15,
                 base_image_seq_len=256, max_image_seq_len=4096)


def chroma_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``ChromaTransformer2DModel`` state dict -> lodestones' keys (Flux's blocks without
    modulation, ``distilled_guidance_layer.layers.N.in_layer`` / ``norms.N.scale``)."""
    from tests.support.flow_convert import flux_to_original

    approx = "distilled_guidance_layer."
    out = flux_to_original({k: v for k, v in sd.items() if not k.startswith(approx)})
    names = {"linear_1": "in_layer", "linear_2": "out_layer"}
    for key, value in sd.items():
        if not key.startswith(approx):
            continue
        parts = key[len(approx):].split(".")
        if parts[0] == "layers":
            parts[2] = names[parts[2]]
        elif parts[0] == "norms":
            parts[-1] = "scale"
        out[approx + ".".join(parts)] = value
    return out


def _transformer(seed: int):
    from diffusers import ChromaTransformer2DModel

    torch.manual_seed(seed)
    return ChromaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2,
                                    attention_head_dim=128, num_attention_heads=1, joint_attention_dim=T5_WIDTH,
                                    axes_dims_rope=(16, 56, 56), approximator_num_channels=64,
                                    approximator_hidden_dim=32, approximator_layers=2)


def _build(root: Path) -> SimpleNamespace:
    from diffusers import ChromaPipeline, FlowMatchEulerDiscreteScheduler
    from transformers import T5EncoderModel

    from nodegen.models.ldm_export import vae_to_ldm
    from nodegen.models.t5_tokenizer import load_t5_tokenizer

    transformer = _transformer(60)
    vae = _vae(61, 0.3611, 0.1159)
    torch.manual_seed(62)
    t5 = T5EncoderModel(t5_config())
    for m in (transformer, vae, t5):
        _randomize_(m, 63)
        m.eval()
    parts = dict(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=vae,
                 text_encoder=t5, tokenizer=load_t5_tokenizer())
    ns = SimpleNamespace(family="chroma", **parts)
    ns.pipeline = lambda **kw: ChromaPipeline(**{**parts, **kw})
    ns.original_transformer = chroma_to_original(_state(transformer))
    ns.diffusion_model = _save(ns.original_transformer, root / "Chroma1-HD.safetensors")
    ns.diffusion_model_diffusers = _save(_state(transformer), root / "chroma-diffusers-transformer.safetensors")
    ns.t5xxl = _save(t5_state(t5), root / "chroma-t5xxl.safetensors")
    ns.vae_file = _save(vae_to_ldm(_state(vae), prefix=""), root / "chroma-ae.safetensors")
    return ns


def fixture(tmp=None) -> SimpleNamespace:
    """The Chroma fixture, built on first use."""
    with _LOCK:
        if "chroma" not in _CACHE:
            torch.set_num_threads(1)
            root = _tmpdir(tmp)
            root.mkdir(parents=True, exist_ok=True)
            _CACHE["chroma"] = _build(root)
        return _CACHE["chroma"]
