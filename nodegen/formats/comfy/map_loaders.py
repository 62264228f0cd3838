"""ComfyUI loaders -> our loaders (checkpoints, VAE, LoRA, CLIP skip, ControlNet, upscale models)."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("CheckpointLoaderSimple", "CheckpointLoader", "ckpt_name", "model clip vae"),
    # ComfyUI's deprecated "Load Checkpoint With Config": we read the layout from the file itself,
    # so the config file is not used (a note says so, with what it may have carried)
    nm("CheckpointLoader", "CheckpointLoader", "config_name ckpt_name", "model clip vae",
       ignore=frozenset({"config_name"}), export=False),
    # ComfyUI's deprecated loader of a diffusers folder (under models/diffusers)
    nm("DiffusersLoader", "DiffusersLoader", "model_path", "model clip vae"),
    nm("VAELoader", "VAELoader", "vae_name", "vae"),
    nm("LoraLoader", "LoraLoader", "lora_name strength_model strength_clip", "model clip"),
    nm("LoraLoaderModelOnly", "LoraLoaderModelOnly", "lora_name strength_model", "model"),
    nm("HypernetworkLoader", "HypernetworkLoader", "hypernetwork_name strength", "model"),
    nm("GLIGENLoader", "GLIGENLoader", "gligen_name", "gligen"),
    nm("CLIPSetLastLayer", "CLIPSetLastLayer", "stop_at_clip_layer", "clip"),
    nm("ControlNetLoader", "ControlNetLoader", "control_net_name", "control_net"),
    nm("UpscaleModelLoader", "UpscaleModelLoader", "model_name", "upscale_model"),
    # city96's ComfyUI-GGUF custom nodes (nodes/gguf_loaders.py); the advanced UNet loader's dequant /
    # patch dtype options have no counterpart (weights are dequantized once, at load)
    nm("UnetLoaderGGUF", "UnetLoaderGGUF", "unet_name", "model"),
    nm("UnetLoaderGGUFAdvanced", "UnetLoaderGGUF", "unet_name dequant_dtype patch_dtype patch_on_device", "model",
       ignore=frozenset({"dequant_dtype", "patch_dtype", "patch_on_device"}), export=False),
    nm("CLIPLoaderGGUF", "CLIPLoaderGGUF", "clip_name type", "clip"),
    nm("DualCLIPLoaderGGUF", "DualCLIPLoaderGGUF", "clip_name1 clip_name2 type", "clip"),
    nm("TripleCLIPLoaderGGUF", "TripleCLIPLoaderGGUF", "clip_name1 clip_name2 clip_name3", "clip"),
    nm("unCLIPCheckpointLoader", "unCLIPCheckpointLoader", "ckpt_name", "model clip vae clip_vision"),
]
