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
    nm("unCLIPCheckpointLoader", "unCLIPCheckpointLoader", "ckpt_name", "model clip vae clip_vision"),
]
