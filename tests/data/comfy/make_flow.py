"""Build the SD3 / SD 3.5 and Flux.1 test workflows in both ComfyUI formats (shaped like ComfyUI's
published flux_schnell, flux_dev and sd3.5 examples). Run once after a change:

    python tests/data/comfy/make_flow.py
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
#: ComfyUI widget order; (name, control value) for seeds
WIDGETS = {
    "UNETLoader": ["unet_name", "weight_dtype"], "DualCLIPLoader": ["clip_name1", "clip_name2", "type", "device"],
    "TripleCLIPLoader": ["clip_name1", "clip_name2", "clip_name3"], "CLIPLoader": ["clip_name", "type", "device"],
    "CheckpointLoaderSimple": ["ckpt_name"], "VAELoader": ["vae_name"], "CLIPTextEncode": ["text"],
    "CLIPTextEncodeFlux": ["clip_l", "t5xxl", "guidance"], "CLIPTextEncodeSD3": ["clip_l", "clip_g", "t5xxl", "empty_padding"],
    "FluxGuidance": ["guidance"], "ModelSamplingSD3": ["shift"], "ModelSamplingFlux": ["max_shift", "base_shift", "width", "height"],
    "EmptySD3LatentImage": ["width", "height", "batch_size"], "RandomNoise": [("noise_seed", "fixed")],
    "KSamplerSelect": ["sampler_name"], "BasicScheduler": ["scheduler", "steps", "denoise"],
    "BetaSamplingScheduler": ["steps", "alpha", "beta"], "BasicGuider": [], "CFGGuider": ["cfg"],
    "SamplerCustomAdvanced": [], "ConditioningZeroOut": [], "VAEDecode": [], "SaveImage": ["filename_prefix"],
    "KSampler": [("seed", "randomize"), "steps", "cfg", "sampler_name", "scheduler", "denoise"],
}
OUT_TYPES = {"UNETLoader": ["MODEL"], "DualCLIPLoader": ["CLIP"], "TripleCLIPLoader": ["CLIP"], "CLIPLoader": ["CLIP"],
             "CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "VAELoader": ["VAE"], "CLIPTextEncode": ["CONDITIONING"],
             "CLIPTextEncodeFlux": ["CONDITIONING"], "CLIPTextEncodeSD3": ["CONDITIONING"], "FluxGuidance": ["CONDITIONING"],
             "ModelSamplingSD3": ["MODEL"], "ModelSamplingFlux": ["MODEL"], "EmptySD3LatentImage": ["LATENT"],
             "RandomNoise": ["NOISE"], "KSamplerSelect": ["SAMPLER"], "BasicScheduler": ["SIGMAS"],
             "BetaSamplingScheduler": ["SIGMAS"], "BasicGuider": ["GUIDER"], "CFGGuider": ["GUIDER"],
             "SamplerCustomAdvanced": ["LATENT", "LATENT"], "ConditioningZeroOut": ["CONDITIONING"],
             "VAEDecode": ["IMAGE"], "SaveImage": [], "KSampler": ["LATENT"]}


def node(cls, **inputs):
    return {"class_type": cls, "inputs": inputs}


FLUX_SCHNELL = {
    "10": node("UNETLoader", unet_name="flux1-schnell.safetensors", weight_dtype="default"),
    "11": node("DualCLIPLoader", clip_name1="t5xxl_fp16.safetensors", clip_name2="clip_l.safetensors", type="flux",
                device="default"),
    "12": node("VAELoader", vae_name="ae.safetensors"),
    "6": node("CLIPTextEncode", text="a cute anime girl with massive fluffy fennec ears", clip=["11", 0]),
    "33": node("ConditioningZeroOut", conditioning=["6", 0]),
    "5": node("EmptySD3LatentImage", width=1024, height=1024, batch_size=1),
    "3": node("KSampler", seed=972054013131368, steps=4, cfg=1.0, sampler_name="euler", scheduler="simple", denoise=1.0,
              model=["10", 0], positive=["6", 0], negative=["33", 0], latent_image=["5", 0]),
    "8": node("VAEDecode", samples=["3", 0], vae=["12", 0]),
    "9": node("SaveImage", filename_prefix="ComfyUI", images=["8", 0]),
}
FLUX_DEV = {
    "12": node("UNETLoader", unet_name="flux1-dev.safetensors", weight_dtype="fp8_e4m3fn"),
    "11": node("DualCLIPLoader", clip_name1="t5xxl_fp16.safetensors", clip_name2="clip_l.safetensors", type="flux",
                device="default"),
    "10": node("VAELoader", vae_name="ae.safetensors"),
    "6": node("CLIPTextEncodeFlux", clip_l="a bottle with a rainbow galaxy inside", t5xxl="a bottle with a rainbow galaxy inside",
              guidance=3.5, clip=["11", 0]),
    "30": node("ModelSamplingFlux", max_shift=1.15, base_shift=0.5, width=1024, height=1024, model=["12", 0]),
    "22": node("BasicGuider", model=["30", 0], conditioning=["6", 0]),
    "25": node("RandomNoise", noise_seed=219670278747233),
    "16": node("KSamplerSelect", sampler_name="euler"),
    "17": node("BasicScheduler", scheduler="simple", steps=20, denoise=1.0, model=["30", 0]),
    "27": node("EmptySD3LatentImage", width=1024, height=1024, batch_size=1),
    "13": node("SamplerCustomAdvanced", noise=["25", 0], guider=["22", 0], sampler=["16", 0], sigmas=["17", 0],
               latent_image=["27", 0]),
    "8": node("VAEDecode", samples=["13", 0], vae=["10", 0]),
    "9": node("SaveImage", filename_prefix="ComfyUI", images=["8", 0]),
}
SD35 = {
    "4": node("CheckpointLoaderSimple", ckpt_name="sd3.5_large.safetensors"),
    "11": node("TripleCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="clip_g.safetensors",
               clip_name3="t5xxl_fp16.safetensors"),
    "16": node("CLIPTextEncodeSD3", clip_l="a tiny astronaut hatching from an egg on the moon",
               clip_g="a tiny astronaut hatching from an egg on the moon",
               t5xxl="a tiny astronaut hatching from an egg on the moon", empty_padding="none", clip=["11", 0]),
    "40": node("CLIPTextEncode", text="", clip=["11", 0]),
    "13": node("ModelSamplingSD3", shift=3.0, model=["4", 0]),
    "20": node("CFGGuider", cfg=4.5, model=["13", 0], positive=["16", 0], negative=["40", 0]),
    "21": node("RandomNoise", noise_seed=585483408983215),
    "22": node("KSamplerSelect", sampler_name="dpmpp_2m"),
    "23": node("BetaSamplingScheduler", steps=30, alpha=0.6, beta=0.6, model=["13", 0]),
    "53": node("EmptySD3LatentImage", width=1024, height=1024, batch_size=1),
    "24": node("SamplerCustomAdvanced", noise=["21", 0], guider=["20", 0], sampler=["22", 0], sigmas=["23", 0],
               latent_image=["53", 0]),
    "8": node("VAEDecode", samples=["24", 0], vae=["4", 2]),
    "9": node("SaveImage", filename_prefix="ComfyUI", images=["8", 0]),
}


def to_ui(api: dict) -> dict:
    ids = {nid: i + 1 for i, nid in enumerate(api)}
    links, nodes = [], []
    outs: dict[tuple[int, int], list[int]] = {}
    for nid, n in api.items():
        for name, v in n["inputs"].items():
            if isinstance(v, list):
                lid = len(links) + 1
                src = ids[v[0]]
                typ = OUT_TYPES[api[v[0]]["class_type"]][v[1]]
                links.append([lid, src, v[1], ids[nid], name, typ])
                outs.setdefault((src, v[1]), []).append(lid)
    for order, (nid, n) in enumerate(api.items()):
        cls = n["class_type"]
        widgets = []
        for w in WIDGETS[cls]:
            if isinstance(w, tuple):
                widgets += [n["inputs"][w[0]], w[1]]
            else:
                widgets.append(n["inputs"][w])
        inputs = [{"name": lk[4], "type": lk[5], "link": lk[0]} for lk in links if lk[3] == ids[nid]]
        slots = {lk[4]: i for i, lk in enumerate(lk for lk in links if lk[3] == ids[nid])}
        for lk in links:
            if lk[3] == ids[nid]:
                lk[4] = slots[lk[4]]
        outputs = [{"name": t, "type": t, "links": outs.get((ids[nid], s), []), "slot_index": s}
                   for s, t in enumerate(OUT_TYPES[cls])]
        nodes.append({"id": ids[nid], "type": cls, "pos": [300 * (order % 4), 250 * (order // 4)], "size": [300, 100],
                      "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                      "properties": {"Node name for S&R": cls}, "widgets_values": widgets})
    return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}


if __name__ == "__main__":
    for name, api in (("flux_schnell", FLUX_SCHNELL), ("flux_dev", FLUX_DEV), ("sd35", SD35)):
        (HERE / f"{name}.api.json").write_text(json.dumps(api, indent=2) + "\n")
        (HERE / f"{name}.ui.json").write_text(json.dumps(to_ui(api), indent=2) + "\n")
