"""Single files in the layouts real tools write (ComfyUI CheckpointSave, A1111 / kohya trainers,
the original LDM training code), each checked for detection, for no tensor dropped silently,
and against diffusers' own loader where one reads the layout; files nodegen cannot use are
refused with a message that names the file and says what it is."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file

from nodegen.models.detect import ModelKindError, detect
from nodegen.models.files import read_shapes
from nodegen.models.loader import load_checkpoint, load_vae
from tests.support.fixtures import fixture

torch.set_num_threads(1)
UNET = "model.diffusion_model."


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict())


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pa, pb = _params(a), _params(b)
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def _unet_out(unet: torch.nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    emb = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([321]), emb).sample


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_training_checkpoint_with_ema_and_schedule_uses_the_model_weights(sd1, tmp_path, caplog):
    """An un-pruned LDM training ``.ckpt``: ``{"state_dict": ...}`` with the EMA UNet under
    ``model_ema.`` (dots removed from its names), the DDPM schedule buffers and ComfyUI's
    ``v_pred``-style markers absent. The ``model.diffusion_model.`` weights are used, as by
    diffusers' ``from_single_file`` (the oracle here), ComfyUI and A1111; nothing is reported."""
    from diffusers import StableDiffusionPipeline

    sd = dict(sd1.ldm_state_dict)
    g = torch.Generator().manual_seed(5)
    for k, v in sd1.ldm_state_dict.items():
        if k.startswith(UNET):
            sd["model_ema." + k[len("model."):].replace(".", "")] = torch.randn(v.shape, generator=g)
    sd.update({"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(10),
               "betas": torch.linspace(1e-4, 2e-2, 1000), "alphas_cumprod": torch.rand(1000),
               "posterior_mean_coef1": torch.rand(1000), "lvlb_weights": torch.rand(1000)})
    path = tmp_path / "v1-train.ckpt"
    torch.save({"state_dict": sd, "global_step": 840000, "epoch": 3}, str(path))
    caplog.set_level(logging.WARNING)
    model, _, _ = load_checkpoint(path)
    assert not _warnings(caplog)
    assert _same(model.unet, sd1.unet)
    oracle = StableDiffusionPipeline.from_single_file(str(path), config=str(sd1.diffusers_dir),
                                                      local_files_only=True, safety_checker=None)
    assert torch.equal(_unet_out(model.unet), _unet_out(oracle.unet))


def test_unknown_tensors_are_reported_with_file_and_count(sd1, tmp_path, caplog):
    sd = dict(sd1.ldm_state_dict)
    sd[UNET + "extra_block.weight"] = torch.ones(3)  # passed over by the UNet key converter
    sd["edm_vpred.sigma_max"] = torch.tensor(120.0)  # an EDM model nodegen does not treat as such
    sd["refiner_head.bias"] = torch.ones(2)
    path = tmp_path / "odd.safetensors"
    save_file(sd, str(path))
    caplog.set_level(logging.WARNING)
    model, _, _ = load_checkpoint(path)
    assert _same(model.unet, sd1.unet)
    msgs = _warnings(caplog)
    assert any("odd.safetensors: 1 tensors are not part of the UNet" in m and "extra_block" in m for m in msgs)
    assert any("odd.safetensors: 2 tensors are not part of the checkpoint" in m and "edm_vpred.sigma_max" in m
               for m in msgs)


def test_old_sd1_text_encoder_layout_without_text_model(sd1, tmp_path, caplog):
    """SD 1.x files made with older transformers: ``cond_stage_model.transformer.embeddings...``
    (no ``text_model.``) and a ``position_ids`` buffer."""
    inner = "cond_stage_model.transformer.text_model."
    sd = {("cond_stage_model.transformer." + k[len(inner):] if k.startswith(inner) else k): v
          for k, v in sd1.ldm_state_dict.items()}
    sd["cond_stage_model.transformer.embeddings.position_ids"] = torch.arange(77)[None]
    assert not any(k.startswith(inner) for k in sd)
    path = tmp_path / "sd14-old.safetensors"
    save_file(sd, str(path))
    assert (detect(read_shapes(path)).kind, detect(read_shapes(path)).family) == ("checkpoint", "sd1")
    caplog.set_level(logging.WARNING)
    _, clip, _ = load_checkpoint(path)
    assert not _warnings(caplog)
    assert _same(clip.encoders[0], sd1.text_encoder)


def test_bf16_file_loads_upcast(sd1, tmp_path):
    path = tmp_path / "sd1-bf16.safetensors"
    save_file({k: v.bfloat16() if v.is_floating_point() else v for k, v in sd1.ldm_state_dict.items()}, str(path))
    model, clip, vae = load_checkpoint(path)
    want = {k: v.bfloat16().float() for k, v in sd1.unet.state_dict().items()}
    got = model.unet.state_dict()
    assert all(got[k].dtype == torch.float32 and torch.equal(got[k], want[k]) for k in want)


def test_instruct_pix2pix_checkpoint_loads_with_eight_input_channels(sd1, tmp_path):
    """An InstructPix2Pix checkpoint (8 input channels: the latent and the image's) loads as one;
    InstructPixToPixConditioning gives it the image (tests/test_oracle_img2img_inpaint.py)."""
    sd = dict(sd1.ldm_state_dict)
    w = sd[UNET + "input_blocks.0.0.weight"]
    sd[UNET + "input_blocks.0.0.weight"] = torch.cat([w, -w], dim=1)  # 8 input channels
    path = tmp_path / "instruct-pix2pix.safetensors"
    save_file(sd, str(path))
    model, _clip, _vae = load_checkpoint(path)
    assert model.in_channels == 8 and not model.is_inpaint
    assert torch.equal(model.unet.conv_in.weight, torch.cat([w, -w], dim=1))


def test_comfyui_sd2_v_pred_marker_and_override(tmp_path_factory, tmp_path, caplog):
    """ComfyUI's CheckpointSave writes an empty ``v_pred`` tensor for v-prediction models; the
    user's ``prediction`` input still wins."""
    ns = fixture("sd2", tmp_path_factory.mktemp("sd2"))
    path = tmp_path / "comfy-sd2.safetensors"
    save_file({**ns.ldm_state_dict, "v_pred": torch.tensor([])}, str(path))
    caplog.set_level(logging.WARNING)
    assert load_checkpoint(path)[0].prediction_type == "v_prediction"
    assert not _warnings(caplog)
    assert load_checkpoint(path, prediction="epsilon")[0].prediction_type == "epsilon"


def test_comfyui_sdxl_save_with_long_position_ids_and_projection_weight(tmp_path_factory, tmp_path, caplog):
    """ComfyUI's SDXL saves carry ``position_ids`` of 512 for CLIP-L and ``logit_scale``; some
    name OpenCLIP's projection ``text_projection.weight`` (ComfyUI reads it untransposed)."""
    ns = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    g = "conditioner.embedders.1.model."
    sd = dict(ns.ldm_state_dict)
    sd["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = torch.arange(512)[None]
    sd[g + "logit_scale"] = torch.tensor(4.6)
    sd[g + "text_projection.weight"] = sd.pop(g + "text_projection")
    path = tmp_path / "comfy-sdxl.safetensors"
    save_file(sd, str(path))
    caplog.set_level(logging.WARNING)
    _, clip, _ = load_checkpoint(path)
    assert not _warnings(caplog)
    assert _same(clip.encoders[0], ns.text_encoder) and _same(clip.encoders[1], ns.text_encoder_2)


def test_vae_training_ckpt_and_taesd(sd1, tmp_path, caplog):
    """``vae-ft-mse-840000-ema-pruned.ckpt``-style files: ``{"state_dict": LDM VAE keys}``, here
    with the training loss left in (ignored) and one stray tensor (reported). A partial TAESD
    file is refused naming the file."""
    ref = load_vae(sd1.single_file)
    vae_sd = {k.removeprefix("first_stage_model."): v for k, v in sd1.ldm_state_dict.items()
              if k.startswith("first_stage_model.")}
    vae_sd.update({"loss.logvar": torch.zeros(()), "loss.discriminator.main.0.weight": torch.ones(4, 3, 4, 4),
                   "encoder.extra.weight": torch.ones(2)})
    path = tmp_path / "vae-ft-mse.ckpt"
    torch.save({"state_dict": vae_sd, "global_step": 840000}, str(path))
    caplog.set_level(logging.WARNING)
    vae = load_vae(path)
    assert _same(vae.vae, ref.vae)
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "vae-ft-mse.ckpt: 1 tensors are not part of the VAE" in msgs[0]
    taesd = tmp_path / "taesd_decoder.safetensors"
    save_file({"1.weight": torch.ones(64, 4, 3, 3), "1.bias": torch.ones(64),
               "3.conv.0.weight": torch.ones(64, 64, 3, 3)}, str(taesd))
    with pytest.raises(ValueError, match=r"taesd_decoder\.safetensors: not a TAESD decoder of the published shape"):
        load_vae(taesd)  # whole TAESD files load (tests/test_taesd.py); a partial one is refused


def test_diff_controlnet_is_refused_by_name(tmp_path):
    from nodegen.models.control_files import load_control
    from nodegen.models.controlnet import ControlNetError

    path = tmp_path / "diff_control_sd15_canny.safetensors"
    save_file({"control_model.input_hint_block.0.weight": torch.ones(16, 3, 3, 3),
               "control_model.zero_convs.0.0.weight": torch.ones(32, 32, 1, 1),
               "difference": torch.tensor([])}, str(path))
    assert detect(read_shapes(path)).kind == "diff_controlnet"
    with pytest.raises(ControlNetError, match=r"diff_control_sd15_canny\.safetensors: this is a 'diff' ControlNet"):
        load_control(path)
    path = tmp_path / "control-lora-canny-rank128.safetensors"
    save_file({"input_hint_block.0.weight": torch.ones(16, 3, 3, 3), "lora_controlnet": torch.tensor([]),
               "input_blocks.1.0.in_layers.2.up": torch.ones(32, 4), "input_blocks.1.0.in_layers.2.down": torch.ones(4, 32)},
              str(path))
    with pytest.raises(ControlNetError, match=r"control-lora-canny-rank128\.safetensors: this is a Control-LoRA"):
        load_control(path)


def _sdxl_unet() -> torch.nn.Module:
    """A small SDXL UNet that keeps the real size-conditioning width (256 per value)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(30)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=192, transformer_layers_per_block=(1, 2), attention_head_dim=(1, 2),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=128 + 6 * 256, norm_num_groups=32)
    return unet.eval()


@pytest.mark.parametrize("layout", ["diffusers", "ldm", "ldm_bare"])
def test_unet_only_files_load_with_the_diffusion_model_loader(sd1, tmp_path, layout, caplog):
    """SD1 / SDXL UNets saved alone (a diffusers folder's ``unet/diffusion_pytorch_model.safetensors``,
    SDXL-Lightning's UNet files, ComfyUI UNet saves with or without ``model.diffusion_model.``):
    the checkpoint loader points to UNETLoader, which loads them."""
    from nodegen.models.flow_loader import load_diffusion_model
    from nodegen.models.ldm_export import unet_to_ldm

    caplog.set_level(logging.WARNING)
    for family, unet in (("sd1", sd1.unet), ("sdxl", _sdxl_unet())):
        sd = {k: v.contiguous() for k, v in unet.state_dict().items()}
        if layout != "diffusers":
            sd = unet_to_ldm(sd, dict(unet.config), prefix=UNET if layout == "ldm" else "")
        path = tmp_path / f"{family}-{layout}-unet.safetensors"
        save_file(sd, str(path))
        with pytest.raises(ModelKindError, match=f"{path.name}: this is a UNet .*UNETLoader"):
            load_checkpoint(path)
        model = load_diffusion_model(path)
        assert model.family == family
        assert _same(model.unet, unet)
    assert not _warnings(caplog)


def test_sd2_768_v_and_512_base_told_apart_by_comfyui_rule():
    """Full-size SD2 files: v-prediction when the std of one late norm bias is > 0.09 (ComfyUI's
    rule); without tensor values, v (as diffusers maps SD2 to the 768-v config)."""
    key = UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    shapes = {UNET + "input_blocks.0.0.weight": (320, 4, 3, 3), key: (320,),
              UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
              "cond_stage_model.model.token_embedding.weight": (49408, 1024),
              "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)}
    g = torch.Generator().manual_seed(0)
    assert detect(shapes).prediction == "v_prediction"
    assert detect(shapes, {key: torch.randn(320, generator=g) * 0.2}).prediction == "v_prediction"
    assert detect(shapes, {key: torch.randn(320, generator=g) * 0.01}).prediction == "epsilon"
    assert (detect(shapes).family, detect(shapes).kind) == ("sd2", "checkpoint")


def test_no_vae_checkpoint_loads_and_its_vae_output_says_what_to_do(sd1, tmp_path):
    """"no-VAE" releases: UNet and text encoder only, meant for a separate VAE file."""
    path = tmp_path / "model-novae.safetensors"
    save_file({k: v for k, v in sd1.ldm_state_dict.items() if not k.startswith("first_stage_model.")}, str(path))
    assert detect(read_shapes(path)).kind == "checkpoint"
    model, clip, vae = load_checkpoint(path)
    assert _same(model.unet, sd1.unet) and _same(clip.encoders[0], sd1.text_encoder)
    with pytest.raises(ValueError, match=r"model-novae\.safetensors holds no VAE .*VAELoader"):
        vae.decode(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ModelKindError, match=r"model-novae\.safetensors: this is a checkpoint \(sd1\) that holds no VAE"):
        load_vae(path)


def test_ckpt_with_pytorch_lightning_callbacks_loads_safely(sd1, tmp_path, monkeypatch):
    """``v1-5-pruned-emaonly.ckpt`` and other LDM-trained files pickle PyTorch Lightning's
    ``ModelCheckpoint`` beside the weights, which ``torch.load(weights_only=True)`` refuses; it is
    read as an empty stand-in (nothing of it runs), any other class still fails."""
    import sys
    import types

    from nodegen.models.files import ModelFileError

    name = "pytorch_lightning.callbacks.model_checkpoint"
    ran = []

    class ModelCheckpoint:
        def __init__(self) -> None:
            self.best_model_score = torch.tensor(0.5)

        def __setstate__(self, state) -> None:
            ran.append(state)

    ModelCheckpoint.__module__ = name
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    for mod in ("pytorch_lightning", "pytorch_lightning.callbacks", name):
        m = types.ModuleType(mod)
        m.ModelCheckpoint = ModelCheckpoint
        monkeypatch.setitem(sys.modules, mod, m)
    path = tmp_path / "v1-5-pruned-emaonly.ckpt"
    torch.save({"state_dict": sd1.ldm_state_dict, "global_step": 840000, "pytorch-lightning_version": "1.4.2",
                "callbacks": {ModelCheckpoint: {"best_model_path": "x"}, "cb": ModelCheckpoint()}}, str(path))
    for mod in ("pytorch_lightning", "pytorch_lightning.callbacks", name):
        monkeypatch.delitem(sys.modules, mod)
    model, _, _ = load_checkpoint(path)
    assert _same(model.unet, sd1.unet) and not ran

    class Other:
        pass

    Other.__module__ = "lightning_evil_lookalike"
    Other.__qualname__ = "Other"
    monkeypatch.setitem(sys.modules, "lightning_evil_lookalike", types.ModuleType("lightning_evil_lookalike"))
    sys.modules["lightning_evil_lookalike"].Other = Other
    bad = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": Other()}, str(bad))
    with pytest.raises(ModelFileError, match=r"other\.ckpt: cannot be loaded safely"):
        load_checkpoint(bad)
