"""Model folders laid out as other tools lay them out are searched under their own names."""

from __future__ import annotations

from nodegen.models.paths import ModelPaths


def test_comfyui_and_a1111_folder_names(tmp_path):
    comfy, a1111 = tmp_path / "ComfyUI" / "models", tmp_path / "webui" / "models"
    files = {comfy / "t2i_adapter" / "t2iadapter_depth.safetensors": "controlnet",
             comfy / "controlnet" / "cn.safetensors": "controlnet",
             comfy / "unet" / "flux1-dev.safetensors": "diffusion_models",
             comfy / "clip" / "t5xxl_fp16.safetensors": "text_encoders",
             comfy / "loras" / "sub" / "style.safetensors": "loras",
             a1111 / "Stable-diffusion" / "sd15.safetensors": "checkpoints",
             a1111 / "Lora" / "detail.safetensors": "loras",
             a1111 / "ESRGAN" / "4x.pth": "upscale_models"}
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    paths = ModelPaths([comfy, a1111], use_env=False, use_config=False)
    for path, kind in files.items():
        name = f"sub/{path.name}" if path.parent.name == "sub" else path.name
        assert name in paths.list(kind), (kind, name)
        assert paths.resolve(kind, name) == path
    assert "t2iadapter_depth.safetensors" not in paths.list("checkpoints")
