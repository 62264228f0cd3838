"""ComfyUI_IPAdapter_plus workflows (IPAdapterUnifiedLoader, IPAdapter, IPAdapterModelLoader,
IPAdapterAdvanced with the core CLIPVisionLoader) imported in both formats and run on fixture
models: the same image as the graph of our own IP-Adapter nodes that computes what the pack does
(CLIP-vision encodings of the image; zeros for a base adapter's negative, a black image's encoding
for a plus adapter's)."""

from __future__ import annotations

import shutil

import pytest
import torch

from nodegen.formats import comfy
from nodegen.runtime.engine import Engine
from tests.support.comfy_ui import ui_from_api

torch.set_num_threads(1)
CLIP_VISION = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
STANDARD = "STANDARD (medium strength)"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from PIL import Image
    from safetensors.torch import save_file

    from tests.support.clip_fixtures import tiny_clip, vision_only
    from tests.support.fixtures import fixture
    from tests.test_ip_adapter import EMBED_DIM, make_ip_adapter, make_plus_projection

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    root = tmp_path_factory.mktemp("models")
    for kind in ("checkpoints", "ipadapter", "clip_vision"):
        (root / kind).mkdir()
    shutil.copy(sd1.single_file, root / "checkpoints" / "tiny-sd1.safetensors")
    clip = tiny_clip(seed=3, dim=EMBED_DIM)  # the base adapter reads the projected embeds (EMBED_DIM wide)
    save_file({k: v.contiguous() for k, v in vision_only(clip).items()}, str(root / "clip_vision" / CLIP_VISION))
    save_file(make_ip_adapter(sd1.unet, 11), str(root / "ipadapter" / "ip-adapter_sd15.safetensors"))
    plus = {k: v for k, v in make_ip_adapter(sd1.unet, 12).items() if k.startswith("ip_adapter.")}
    plus |= make_plus_projection(sd1.unet.config.cross_attention_dim, clip.config.vision_config.hidden_size, 13)
    save_file(plus, str(root / "ipadapter" / "ip-adapter-plus_sd15.safetensors"))
    inp = tmp_path_factory.mktemp("input")
    g = torch.Generator().manual_seed(0)
    Image.fromarray((torch.rand(48, 64, 3, generator=g) * 255).to(torch.uint8).numpy()).save(inp / "face.png")
    Image.new("RGB", (64, 64)).save(inp / "black.png")
    return Engine(models=root, input_dir=inp, output_dir=tmp_path_factory.mktemp("out"), device="cpu")


def _api() -> dict:
    def n(ct, **inputs):
        return {"class_type": ct, "inputs": inputs}

    return {
        "4": n("CheckpointLoaderSimple", ckpt_name="tiny-sd1.safetensors"),
        "10": n("IPAdapterUnifiedLoader", preset=STANDARD, model=["4", 0]),
        "11": n("LoadImage", image="face.png"),
        "12": n("IPAdapter", weight=0.8, start_at=0.0, end_at=1.0, weight_type="standard", model=["10", 0],
                ipadapter=["10", 1], image=["11", 0]),
        "13": n("IPAdapterModelLoader", ipadapter_file="ip-adapter-plus_sd15.safetensors"),
        "14": n("CLIPVisionLoader", clip_name=CLIP_VISION),
        "15": n("IPAdapterAdvanced", weight=0.6, weight_type="linear", combine_embeds="concat", start_at=0.2,
                end_at=0.9, embeds_scaling="V only", model=["12", 0], ipadapter=["13", 0], image=["11", 0],
                clip_vision=["14", 0]),
        "5": n("EmptyLatentImage", width=64, height=64, batch_size=1),
        "6": n("CLIPTextEncode", text="a portrait", clip=["4", 1]),
        "7": n("CLIPTextEncode", text="blurry", clip=["4", 1]),
        "3": n("KSampler", seed=5, steps=3, cfg=6.0, sampler_name="euler", scheduler="normal", denoise=1.0,
               model=["15", 0], positive=["6", 0], negative=["7", 0], latent_image=["5", 0]),
        "8": n("VAEDecode", samples=["3", 0], vae=["4", 2]),
        "9": n("SaveImage", filename_prefix="ipadapter", images=["8", 0]),
    }


#: Widget order of each class as its node definition lists it (ComfyUI's nodes.py; the pack's
#: IPAdapterPlus.py INPUT_TYPES), typed here independently of the importer's tables.
WIDGETS = {"CheckpointLoaderSimple": ["ckpt_name"], "IPAdapterUnifiedLoader": ["preset"],
           "LoadImage": ["image", "upload"], "IPAdapter": ["weight", "start_at", "end_at", "weight_type"],
           "IPAdapterModelLoader": ["ipadapter_file"], "CLIPVisionLoader": ["clip_name"],
           "IPAdapterAdvanced": ["weight", "weight_type", "combine_embeds", "start_at", "end_at", "embeds_scaling"],
           "EmptyLatentImage": ["width", "height", "batch_size"], "CLIPTextEncode": ["text"],
           "KSampler": ["seed", "control", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
           "VAEDecode": [], "SaveImage": ["filename_prefix"]}
OUTPUTS = {"CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "IPAdapterUnifiedLoader": ["MODEL", "IPADAPTER"],
           "LoadImage": ["IMAGE", "MASK"], "IPAdapter": ["MODEL"], "IPAdapterModelLoader": ["IPADAPTER"],
           "CLIPVisionLoader": ["CLIP_VISION"], "IPAdapterAdvanced": ["MODEL"], "EmptyLatentImage": ["LATENT"],
           "CLIPTextEncode": ["CONDITIONING"], "KSampler": ["LATENT"], "VAEDecode": ["IMAGE"], "SaveImage": []}


def _ui(api: dict) -> dict:
    return ui_from_api(api, WIDGETS, OUTPUTS)


def _ours() -> dict:
    """The same computation from our own nodes: CLIPVisionEncode + IPAdapterApply."""
    def lk(nid, out):
        return {"from": [nid, out]}

    nodes = {
        "ck": ("CheckpointLoader", {"ckpt_name": "tiny-sd1.safetensors"}),
        "cv": ("CLIPVisionLoader", {"clip_name": CLIP_VISION}),
        "img": ("LoadImage", {"image": "face.png"}),
        "blk": ("LoadImage", {"image": "black.png"}),
        "enc": ("CLIPVisionEncode", {"clip_vision": lk("cv", "clip_vision"), "image": lk("img", "image"), "crop": "center"}),
        "encb": ("CLIPVisionEncode", {"clip_vision": lk("cv", "clip_vision"), "image": lk("blk", "image"),
                                      "crop": "center"}),
        "ip1": ("IPAdapterLoader", {"ipadapter_file": "ip-adapter_sd15.safetensors"}),
        "ip2": ("IPAdapterLoader", {"ipadapter_file": "ip-adapter-plus_sd15.safetensors"}),
        "a1": ("IPAdapterApply", {"model": lk("ck", "model"), "ipadapter": lk("ip1", "ipadapter"),
                                  "clip_vision_output": lk("enc", "clip_vision_output"), "weight": 0.8,
                                  "start_at": 0.0, "end_at": 1.0}),
        "a2": ("IPAdapterApply", {"model": lk("a1", "model"), "ipadapter": lk("ip2", "ipadapter"),
                                  "clip_vision_output": lk("enc", "clip_vision_output"), "weight": 0.6,
                                  "start_at": 0.2, "end_at": 0.9,
                                  "negative_clip_vision_output": lk("encb", "clip_vision_output")}),
        "lat": ("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}),
        "p": ("CLIPTextEncode", {"text": "a portrait", "clip": lk("ck", "clip")}),
        "n": ("CLIPTextEncode", {"text": "blurry", "clip": lk("ck", "clip")}),
        "ks": ("KSampler", {"seed": 5, "steps": 3, "cfg": 6.0, "sampler_name": "euler", "scheduler": "normal",
                            "denoise": 1.0, "model": lk("a2", "model"), "positive": lk("p", "conditioning"),
                            "negative": lk("n", "conditioning"), "latent_image": lk("lat", "latent")}),
        "dec": ("VAEDecode", {"samples": lk("ks", "latent"), "vae": lk("ck", "vae")}),
        "save": ("SaveImage", {"filename_prefix": "ours", "images": lk("dec", "image")}),
    }
    return {"format": "nodegen-workflow", "version": 1,
            "nodes": {nid: {"type": t, "inputs": ins} for nid, (t, ins) in nodes.items()}}


def _pixels(result) -> list:
    assert result.ok, (result.problems, [str(f) for f in result.failures])
    return [list(im.getdata()) for im in result.images]


def test_ipadapter_plus_workflow_in_both_formats_runs_as_our_nodes(engine, tmp_path):
    api = _api()
    doc, notes = comfy.import_comfy(api)
    assert notes == []
    assert doc["nodes"]["15"]["inputs"]["combine_embeds"] == "concat"
    assert doc["nodes"]["15"]["inputs"]["clip_vision"] == {"from": ["14", "clip_vision"]}
    assert doc["nodes"]["12"]["inputs"]["ipadapter"] == {"from": ["10", "ipadapter"]}
    assert comfy.export_api(doc) == api
    ui_doc, ui_notes = comfy.import_comfy(_ui(api))
    assert ui_notes == [] and {k: n["inputs"] for k, n in ui_doc["nodes"].items()} == {
        k: n["inputs"] for k, n in doc["nodes"].items()}
    from_api = _pixels(engine.run(doc))
    assert _pixels(engine.run(ui_doc)) == from_api
    assert _pixels(engine.run(_ours())) == from_api
    without = dict(api, **{"3": {**api["3"], "inputs": {**api["3"]["inputs"], "model": ["4", 0]}}})
    assert _pixels(engine.run(comfy.import_comfy(without)[0])) != from_api  # the adapters matter


def test_unified_loader_and_apply_errors(engine):
    api = _api()
    api["10"]["inputs"]["preset"] = "PLUS FACE (portraits)"  # no plus-face file in the folder
    result = engine.run(comfy.import_comfy(api)[0])
    assert not result.ok
    assert any("IPAdapterUnifiedLoader" in str(f) and "plus.face.sd15" in str(f) for f in result.failures)
    api = _api()
    api["15"]["inputs"]["weight_type"] = "style transfer precise"  # not offered: refused up front
    result = engine.run(comfy.import_comfy(api)[0])
    assert result.status == "invalid" and [(p.node_id, p.input) for p in result.problems] == [("15", "weight_type")]
    api = _api()
    del api["15"]["inputs"]["clip_vision"]  # a model-loader adapter carries no CLIP vision
    result = engine.run(comfy.import_comfy(api)[0])
    assert any("clip_vision" in str(f) and "IPAdapterAdvanced" in str(f) for f in result.failures)


def test_several_images_are_combined_before_the_projection(engine):
    from types import SimpleNamespace

    from nodegen.clip.load import load_clip_vision
    from nodegen.kernel.registry import default_registry
    from nodegen.models.ip_adapter import load_ip_adapter
    from nodegen.models.objects import DiffusionModel
    from tests.support.fixtures import fixture

    paths = engine.env.paths
    vision = load_clip_vision(paths.resolve("clip_vision", CLIP_VISION))
    adapter = load_ip_adapter(paths.resolve("ipadapter", "ip-adapter_sd15.safetensors"))
    model = DiffusionModel.from_unet(fixture("sd1").unet, "sd1")
    images = torch.rand(2, 40, 40, 3, generator=torch.Generator().manual_seed(1))
    each = vision.encode(images).image_embeds
    node = default_registry()["IPAdapterAdvanced"]
    ctx = SimpleNamespace(device=torch.device("cpu"))

    def positive(method):
        out = node.run(ctx, model=model, ipadapter=adapter, image=images, weight=1.0, weight_type="linear",
                       combine_embeds=method, start_at=0.0, end_at=1.0, clip_vision=vision)
        return out.options["ip_adapters"][0].positive

    torch.testing.assert_close(positive("average"), each.mean(0, keepdim=True))
    torch.testing.assert_close(positive("add"), each.sum(0, keepdim=True))
    torch.testing.assert_close(positive("subtract"), each[:1] - each[1:])
    with pytest.raises(ValueError, match="IPAdapterAdvanced: input 'image' holds 2 images"):
        positive("concat")


def test_encoder_and_embeds_workflow_equals_the_advanced_node(engine):
    """IPAdapterEncoder -> IPAdapterCombineEmbeds (average of two encodings) -> IPAdapterEmbeds, in both
    formats, gives the image of IPAdapterAdvanced averaging the same two images."""
    api = _api()
    del api["12"], api["10"]
    api["15"]["inputs"].update(model=["4", 0], image=["16", 0], combine_embeds="average", weight_type="ease out")
    api["16"] = {"class_type": "ImageBatch", "inputs": {"image1": ["11", 0], "image2": ["17", 0]}}
    api["17"] = {"class_type": "LoadImage", "inputs": {"image": "black.png"}}
    advanced = _pixels(engine.run(comfy.import_comfy(api)[0]))
    for nid, (image, out) in {"20": ("11", 0), "21": ("17", 0)}.items():
        api[nid] = {"class_type": "IPAdapterEncoder", "inputs": {"weight": 1.0, "ipadapter": ["13", 0],
                                                                "image": [image, out], "clip_vision": ["14", 0]}}
    api["22"] = {"class_type": "IPAdapterCombineEmbeds", "inputs": {"method": "average", "embed1": ["20", 0],
                                                                    "embed2": ["21", 0]}}
    api["15"] = {"class_type": "IPAdapterEmbeds", "inputs": {
        "weight": 0.6, "weight_type": "ease out", "start_at": 0.2, "end_at": 0.9, "embeds_scaling": "V only",
        "model": ["4", 0], "ipadapter": ["13", 0], "pos_embed": ["22", 0], "neg_embed": ["20", 1]}}
    del api["16"]
    doc, notes = comfy.import_comfy(api)
    assert notes == [] and comfy.export_api(doc) == api
    WIDGETS.update({"IPAdapterEncoder": ["weight"], "IPAdapterCombineEmbeds": ["method"],
                    "IPAdapterEmbeds": ["weight", "weight_type", "start_at", "end_at", "embeds_scaling"]})
    OUTPUTS.update({"IPAdapterEncoder": ["EMBEDS", "EMBEDS"], "IPAdapterCombineEmbeds": ["EMBEDS"],
                    "IPAdapterEmbeds": ["MODEL"]})
    ui_doc, ui_notes = comfy.import_comfy(_ui(api))
    assert ui_notes == [] and {k: n["inputs"] for k, n in ui_doc["nodes"].items()} == {
        k: n["inputs"] for k, n in doc["nodes"].items()}
    assert _pixels(engine.run(doc)) == advanced
    assert _pixels(engine.run(ui_doc)) == advanced


def test_presets_pick_the_published_file_names():
    from types import SimpleNamespace

    from nodegen.models.ip_adapter_presets import PresetError, preset_files

    files = {"ipadapter": ["SD15/ip-adapter_sd15_light.safetensors", "ip-adapter_sd15_light_v11.bin",
                           "ip-adapter-plus_sdxl_vit-h.safetensors", "ip-adapter_sdxl.safetensors",
                           "ip-adapter_sdxl_vit-h.safetensors"],
             "clip_vision": ["CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors", CLIP_VISION]}
    paths = SimpleNamespace(list=lambda kind: files[kind], describe=lambda kind: f"the {kind} folder")
    assert preset_files(paths, "LIGHT - SD1.5 only (low strength)", False) == ("ip-adapter_sd15_light_v11.bin",
                                                                                CLIP_VISION)
    assert preset_files(paths, STANDARD, True) == ("ip-adapter_sdxl_vit-h.safetensors", CLIP_VISION)
    assert preset_files(paths, "VIT-G (medium strength)", True) == (
        "ip-adapter_sdxl.safetensors", "CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors")
    assert preset_files(paths, "PLUS (high strength)", True)[0] == "ip-adapter-plus_sdxl_vit-h.safetensors"
    with pytest.raises(PresetError, match="no IP-Adapter for SDXL"):
        preset_files(paths, "LIGHT - SD1.5 only (low strength)", True)
    with pytest.raises(PresetError, match="ip.adapter.sd15.*the ipadapter folder"):
        preset_files(paths, STANDARD, False)
