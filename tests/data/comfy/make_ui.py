"""Build the editor-format (``*.ui.json``) twins of the API-format test workflows, and
``txt2img.png`` (a PNG with both ComfyUI chunks). Run once after changing a ``*.api.json``:

    python tests/data/comfy/make_ui.py

The editor format is written the way ComfyUI's front-end writes it: positional widget values in
ComfyUI's widget order (typed here from ComfyUI's node definitions, independently of the importer's
tables), a "control after generate" value after each seed, the upload widget's value after
LoadImage's file name, links as ``[id, origin, slot, target, slot, type]``. Per-file extras add
what only the editor format has: notes, groups, a reroute, primitive nodes feeding converted
widgets, a muted and a bypassed node. ComfyUI's API export of each file is the ``*.api.json``.
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
WIDGETS = {  # ComfyUI widget order; (name, control value after it) for seeds
    "CheckpointLoaderSimple": ["ckpt_name"], "VAELoader": ["vae_name"],
    "LoraLoader": ["lora_name", "strength_model", "strength_clip"],
    "LoraLoaderModelOnly": ["lora_name", "strength_model"], "CLIPSetLastLayer": ["stop_at_clip_layer"],
    "CLIPTextEncode": ["text"],
    "CLIPTextEncodeSDXL": ["width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l"],
    "CLIPTextEncodeSDXLRefiner": ["ascore", "width", "height", "text"],
    "ConditioningSetArea": ["width", "height", "x", "y", "strength"],
    "ControlNetLoader": ["control_net_name"], "ControlNetApply": ["strength"],
    "ControlNetApplyAdvanced": ["strength", "start_percent", "end_percent"],
    "KSampler": [("seed", "randomize"), "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": ["add_noise", ("noise_seed", "fixed"), "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"],
    "SamplerCustom": ["add_noise", ("noise_seed", "increment"), "cfg"],
    "KSamplerSelect": ["sampler_name"], "BasicScheduler": ["scheduler", "steps", "denoise"],
    "KarrasScheduler": ["steps", "sigma_max", "sigma_min", "rho"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "LatentUpscale": ["upscale_method", "width", "height", "crop"], "LatentUpscaleBy": ["upscale_method", "scale_by"],
    "VAEEncodeForInpaint": ["grow_mask_by"], "LoadImage": ["image", ("upload", None)],
    "LoadImageMask": ["image", "channel", ("upload", None)], "SaveImage": ["filename_prefix"],
    "ImageScale": ["upscale_method", "width", "height", "crop"], "ImageScaleBy": ["upscale_method", "scale_by"],
    "UpscaleModelLoader": ["model_name"],
    # custom-sampling helpers (ComfyUI's comfy_extras/nodes_custom_sampler.py, nodes_align_your_steps.py)
    "SamplerDPMPP_2M_SDE": ["solver_type", "eta", "s_noise", "noise_device"],
    "SamplerEulerAncestral": ["eta", "s_noise"], "AlignYourStepsScheduler": ["model_type", "steps", "denoise"],
    "SplitSigmasDenoise": ["denoise"], "LaplaceScheduler": ["steps", "sigma_max", "sigma_min", "mu", "beta"],
    # masks and compositing (ComfyUI's nodes.py, comfy_extras/nodes_mask.py, nodes_latent.py, ...)
    "ImageScaleToTotalPixels": ["upscale_method", "megapixels", "resolution_steps"],
    "ImagePadForOutpaint": ["left", "top", "right", "bottom", "feathering"], "GrowMask": ["expand", "tapered_corners"],
    "FeatherMask": ["left", "top", "right", "bottom"], "ImageColorToMask": ["color"],
    "MaskComposite": ["x", "y", "operation"], "DifferentialDiffusion": ["strength"], "LatentBlend": ["blend_factor"],
    "LatentComposite": ["x", "y", "feather"], "LatentCompositeMasked": ["x", "y", "resize_source"],
    "ImageCompositeMasked": ["x", "y", "resize_source"], "Canny": ["low_threshold", "high_threshold"],
    # model merging (comfy_extras/nodes_model_merging.py)
    "ModelMergeSimple": ["ratio"], "ModelMergeSubtract": ["multiplier"], "ModelMergeBlocks": ["input", "middle", "out"],
    "CLIPMergeSimple": ["ratio"], "CLIPMergeSubtract": ["multiplier"], "CheckpointSave": ["filename_prefix"],
}
OUTPUTS = {
    "CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "VAELoader": ["VAE"], "LoraLoader": ["MODEL", "CLIP"],
    "LoraLoaderModelOnly": ["MODEL"], "CLIPSetLastLayer": ["CLIP"], "ControlNetLoader": ["CONTROL_NET"],
    "ControlNetApplyAdvanced": ["positive", "negative"], "SamplerCustom": ["output", "denoised_output"],
    "KSamplerSelect": ["SAMPLER"], "BasicScheduler": ["SIGMAS"], "KarrasScheduler": ["SIGMAS"],
    "LoadImage": ["IMAGE", "MASK"], "LoadImageMask": ["MASK"], "UpscaleModelLoader": ["UPSCALE_MODEL"],
    "VAEDecode": ["IMAGE"], "ImageUpscaleWithModel": ["IMAGE"], "ImageScale": ["IMAGE"], "ImageScaleBy": ["IMAGE"],
    "SaveImage": [], "PreviewImage": [],
    "SamplerDPMPP_2M_SDE": ["SAMPLER"], "SamplerEulerAncestral": ["SAMPLER"], "AlignYourStepsScheduler": ["SIGMAS"],
    "SplitSigmasDenoise": ["high_sigmas", "low_sigmas"], "LaplaceScheduler": ["SIGMAS"], "FlipSigmas": ["SIGMAS"],
    "ImageScaleToTotalPixels": ["IMAGE"], "ImagePadForOutpaint": ["IMAGE", "MASK"], "GrowMask": ["MASK"],
    "FeatherMask": ["MASK"], "ImageColorToMask": ["MASK"], "MaskComposite": ["MASK"], "DifferentialDiffusion": ["MODEL"],
    "ImageCompositeMasked": ["IMAGE"], "ImageBatch": ["IMAGE"], "Canny": ["IMAGE"],
    "ModelMergeSimple": ["MODEL"], "ModelMergeSubtract": ["MODEL"], "ModelMergeAdd": ["MODEL"],
    "ModelMergeBlocks": ["MODEL"], "CLIPMergeSimple": ["CLIP"], "CLIPMergeSubtract": ["CLIP"], "CLIPMergeAdd": ["CLIP"],
    "CheckpointSave": [],
}


def to_ui(api: dict, extras: dict) -> dict:
    nodes, links = [], []
    by_id: dict[int, dict] = {}
    for i, (nid, n) in enumerate(api.items()):
        ct = n["class_type"]
        wv = []
        for w in WIDGETS.get(ct, []):
            name, control = (w if isinstance(w, tuple) else (w, "-"))
            if name == "upload":
                wv.append("image")
                continue
            wv.append(n["inputs"][name])
            if control not in ("-", None):
                wv.append(control)
        outs = OUTPUTS.get(ct, ["LATENT"] if "Latent" in ct or "Sampler" in ct or "VAEEncode" in ct
                           else ["CONDITIONING"])
        node = {"id": int(nid), "type": ct, "pos": [300 * (i % 5), 250 * (i // 5)],
                "size": {"0": 315, "1": 120}, "flags": {}, "order": i, "mode": 0,
                "inputs": [], "outputs": [{"name": o, "type": o.upper(), "links": [], "slot_index": s}
                                          for s, o in enumerate(outs)],
                "properties": {"Node name for S&R": ct}}
        if wv:
            node["widgets_values"] = wv
        by_id[int(nid)] = node
        nodes.append(node)
    for nid, n in api.items():
        for name, v in n["inputs"].items():
            if isinstance(v, list):
                link(links, by_id, int(v[0]), v[1], int(nid), name)
    extras.get("edit", lambda *a: None)(nodes, links, by_id)
    return {"last_node_id": max(by_id), "last_link_id": max((r[0] for r in links), default=0), "nodes": nodes, "links": links,
            "groups": extras.get("groups", []), "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
            "version": 0.4}


def link(links, by_id, src, slot, dst, name, widget=False, ltype=None):
    lid = max((r[0] for r in links), default=0) + 1
    t = ltype or by_id[src]["outputs"][slot]["type"]
    node = by_id[dst]
    inp = next((x for x in node["inputs"] if x["name"] == name), None)
    if inp is None:
        inp = {"name": name, "type": t, "link": None}
        if widget:
            inp["widget"] = {"name": name}
        node["inputs"].append(inp)
    inp["link"] = lid
    by_id[src]["outputs"][slot]["links"].append(lid)
    links.append([lid, src, slot, dst, node["inputs"].index(inp), t])
    return lid


def unlink(links, by_id, dst, name):
    inp = next(x for x in by_id[dst]["inputs"] if x["name"] == name)
    lid = inp["link"]
    row = next(r for r in links if r[0] == lid)
    links.remove(row)
    by_id[row[1]]["outputs"][row[2]]["links"].remove(lid)
    inp["link"] = None


def add(nodes, by_id, nid, ct, outs=(), wv=None, mode=0, **kw):
    node = {"id": nid, "type": ct, "pos": [0, -200], "size": [210, 60], "flags": {}, "order": 99,
            "mode": mode, "inputs": [], "outputs": [{"name": o, "type": t, "links": []} for o, t in outs],
            "properties": {}, **kw}
    if wv is not None:
        node["widgets_values"] = wv
    nodes.append(node)
    by_id[nid] = node
    return node


def txt2img_edit(nodes, links, by_id):  # a reroute between decode and save, a note
    add(nodes, by_id, 20, "Reroute", [("", "IMAGE")], inputs=[])
    unlink(links, by_id, 9, "images")
    link(links, by_id, 8, 0, 20, "")
    link(links, by_id, 20, 0, 9, "images")
    add(nodes, by_id, 21, "Note", wv=["Seeds randomise after each run."], title="About", color="#432",
        bgcolor="#653")


def lora_edit(nodes, links, by_id):  # a bypassed LoRA between the second LoRA and the sampler
    add(nodes, by_id, 21, "LoraLoaderModelOnly", [("MODEL", "MODEL")], wv=["tiny-lora.safetensors", 1.0],
        mode=4)
    unlink(links, by_id, 3, "model")
    link(links, by_id, 11, 0, 21, "model")
    link(links, by_id, 21, 0, 3, "model")


def esrgan_edit(nodes, links, by_id):  # a muted preview, collapsed loader
    add(nodes, by_id, 21, "PreviewImage", [], mode=2)
    link(links, by_id, 11, 0, 21, "images")
    by_id[10]["flags"] = {"collapsed": True}


def sdxl_edit(nodes, links, by_id):  # primitives feeding converted widgets, a markdown note
    add(nodes, by_id, 30, "PrimitiveNode", [("INT", "INT")], wv=[6, "fixed"], title="steps")
    add(nodes, by_id, 31, "PrimitiveNode", [("COMBO", "COMBO")], wv=["euler", "fixed", ""], title="sampler")
    add(nodes, by_id, 32, "PrimitiveNode", [("STRING", "STRING")], wv=["blurry"], title="negative")
    for target in (10, 11):
        link(links, by_id, 30, 0, target, "steps", widget=True, ltype="INT")
        link(links, by_id, 31, 0, target, "sampler_name", widget=True, ltype="COMBO")
    for target in (16,):
        link(links, by_id, 32, 0, target, "text", widget=True, ltype="STRING")
    add(nodes, by_id, 33, "MarkdownNote", wv=["# SDXL\nbase then refiner"])


EXTRAS = {
    "txt2img": {"edit": txt2img_edit, "groups": [{"title": "Prompt", "bounding": [280, -40, 700, 400],
                                                  "color": "#3f789e", "font_size": 24}]},
    "lora": {"edit": lora_edit},
    "esrgan_upscale": {"edit": esrgan_edit},
    "sdxl_refiner": {"edit": sdxl_edit, "groups": [{"title": "Refiner", "bounding": [0, 0, 600, 300],
                                                    "color": "#a1309b"}]},
}


def main() -> None:
    for api_file in sorted(HERE.glob("*.api.json")):
        name = api_file.name[: -len(".api.json")]
        api = json.loads(api_file.read_text())
        ui = to_ui(api, EXTRAS.get(name, {}))
        (HERE / f"{name}.ui.json").write_text(json.dumps(ui, indent=1) + "\n")
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("prompt", (HERE / "txt2img.api.json").read_text())
    info.add_text("workflow", (HERE / "txt2img.ui.json").read_text())
    Image.new("RGB", (8, 8), (200, 30, 30)).save(HERE / "txt2img.png", pnginfo=info)


if __name__ == "__main__":
    main()
