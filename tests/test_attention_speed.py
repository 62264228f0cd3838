"""TomePatchModel (Token Merging) and HyperTile against ComfyUI's rules, written out plainly here:
the merge as groups of tokens (each destination averaged with the sources merged into it), the tiles
as index lists, and ComfyUI's attention (``BasicTransformerBlock`` with the patches on q, k, v and
on the output; inputs split by the queries' batch) drawing from torch's global generator right after
``torch.manual_seed(seed)`` and the initial noise, as ComfyUI's KSampler leaves it."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nodegen.diffusion.hypertile import from_tiles, random_divisor, to_tiles
from nodegen.diffusion.self_attention_patches import self_attentions
from nodegen.diffusion.token_merging import bipartite_soft_matching
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)


# -- the rules, written out plainly -------------------------------------------------------------------
def plain_merge(metric: torch.Tensor, w: int, h: int, r: int):
    """ToMe's bipartite matching as groups; draws the destinations with ``torch.randint`` on the global
    generator, as ComfyUI. Returns ``(merge, unmerge)`` (merged tokens in an order of its own)."""
    b, n, _ = metric.shape
    if r <= 0 or w == 1 or h == 1:
        return (lambda x: x), (lambda x: x)
    pick = torch.randint(4, size=(h // 2, w // 2, 1))
    is_dst = torch.zeros(h, w, dtype=torch.bool)
    for cy in range(h // 2):
        for cx in range(w // 2):
            k = int(pick[cy, cx, 0])
            is_dst[cy * 2 + k // 2, cx * 2 + k % 2] = True
    dst = [i for i in range(n) if is_dst.flatten()[i]]
    src = [i for i in range(n) if not is_dst.flatten()[i]]
    r = min(r, len(src))
    plans = []  # per batch item: the kept sources, then per destination its group of tokens
    for item in range(b):
        unit = metric[item] / metric[item].norm(dim=-1, keepdim=True)
        best, which = (unit[src] @ unit[dst].T).max(dim=-1)
        ranked = sorted(range(len(src)), key=lambda i: -float(best[i]))
        groups = {d: [d] for d in dst}
        for i in ranked[:r]:
            groups[dst[int(which[i])]].append(src[i])
        plans.append(([src[i] for i in ranked[r:]], [groups[d] for d in dst]))

    def merge(x):
        return torch.stack([torch.cat([x[i, kept], torch.stack([x[i, g].mean(0) for g in groups])])
                            for i, (kept, groups) in enumerate(plans)])

    def unmerge(y):
        out = torch.zeros(b, n, y.shape[-1], dtype=y.dtype)
        for i, (kept, groups) in enumerate(plans):
            out[i, kept] = y[i, : len(kept)]
            for j, g in enumerate(groups):
                out[i, g] = y[i, len(kept) + j]
        return out

    return merge, unmerge


def tile_index(nh: int, nw: int, h: int, w: int) -> list[list[int]]:
    """Per tile (row by row), its tokens of the ``h x w`` grid in raster order."""
    th, tw = h // nh, w // nw
    return [[(i * th + y) * w + j * tw + x for y in range(th) for x in range(tw)] for i in range(nh) for j in range(nw)]


def plain_divisor(value: int, min_value: int, max_options: int) -> int:
    min_value = min(min_value, value)
    options = [value // d for d in range(min_value, value + 1) if value % d == 0][:max_options]
    return options[int(torch.randint(0, len(options) - 1, (1,)))] if len(options) > 1 else options[0]


class ComfyAttention:
    """An ``attn1`` processor doing what ComfyUI's transformer block does with ``attn1_patch`` /
    ``attn1_output_patch`` functions ``(q, k, v, extra) -> (q, k, v)`` / ``(out, extra) -> out``."""

    def __init__(self, patch_in, patch_out, shape: list):
        self.patch_in, self.patch_out, self.shape = patch_in, patch_out, shape

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        extra = {"original_shape": self.shape[0]}
        q, k, v = self.patch_in(hidden_states, hidden_states, hidden_states, extra)
        q, k, v = attn.to_q(q), attn.to_k(k), attn.to_v(v)
        b, heads = q.shape[0], attn.heads  # ComfyUI's attention splits every input by the queries' batch
        q, k, v = (t.reshape(b, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, heads * q.shape[-1])
        return self.patch_out(attn.to_out[1](attn.to_out[0](out)), extra)


def comfy_tome(ratio):
    state = {}

    def patch_in(q, k, v, extra):
        _, _, h0, w0 = extra["original_shape"]
        down = int(math.ceil(math.sqrt((h0 * w0) // q.shape[1])))
        m, state["u"] = ((lambda x: x), (lambda x: x)) if down > 1 else plain_merge(q, w0, h0, int(q.shape[1] * ratio))
        return m(q), k, v

    return patch_in, lambda out, extra: state["u"](out)


def comfy_hypertile(tile_size, swap_size, max_depth, scale_depth):
    state = {}

    def patch_in(q, k, v, extra):
        shape = extra["original_shape"]
        sizes = [(shape[-2] / 2**i) * (shape[-1] / 2**i) for i in range(max_depth + 1)]
        if q.shape[-2] not in sizes:
            return q, k, v
        aspect = shape[-1] / shape[-2]
        h, w = round(math.sqrt(q.shape[1] * aspect)), round(math.sqrt(q.shape[1] / aspect))
        side = (max(32, tile_size) // 8) * (2 ** sizes.index(q.shape[-2]) if scale_depth else 1)
        nh, nw = plain_divisor(h, side, swap_size), plain_divisor(w, side, swap_size)
        if nh * nw > 1:
            tiles = tile_index(nh, nw, h, w)
            q = torch.cat([torch.stack([q[i, t] for t in tiles]) for i in range(q.shape[0])])
            state["t"] = tiles
        return q, k, v

    def patch_out(out, extra):
        tiles = state.pop("t", None)
        if tiles is None:
            return out
        b = out.shape[0] // len(tiles)
        full = torch.zeros(b, sum(map(len, tiles)), out.shape[-1], dtype=out.dtype)
        for i in range(b):
            for j, t in enumerate(tiles):
                full[i, t] = out[i * len(tiles) + j]
        return full

    return patch_in, patch_out


# -- the functions on tensors --------------------------------------------------------------------------
@pytest.mark.parametrize("w,h,r", [(6, 4, 5), (5, 5, 7), (4, 4, 100), (6, 4, 0)])
def test_merge_and_unmerge_are_the_plain_groups(w, h, r):
    x = torch.randn(2, w * h, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    want_m, want_u = plain_merge(x, w, h, r)
    merge, unmerge = bipartite_soft_matching(x, w, h, 2, 2, r, torch.Generator().manual_seed(7))
    merged = merge(x)
    n_src = w * h - (h // 2) * (w // 2)
    assert merged.shape == (2, w * h - min(r, n_src), 8)
    torch.testing.assert_close(unmerge(merged), want_u(want_m(x)))
    y = torch.randn(merged.shape, generator=torch.Generator().manual_seed(2))  # unmerge of any output
    torch.testing.assert_close(want_u(want_m(unmerge(y))), unmerge(y))  # constant on each group


def test_tiles_are_the_grids_blocks_row_by_row():
    x = torch.randn(2, 6 * 8, 3)
    tiles = to_tiles(x, 2, 4, 6, 8)
    want = torch.cat([torch.stack([x[i, t] for t in tile_index(2, 4, 6, 8)]) for i in range(2)])
    assert torch.equal(tiles, want) and torch.equal(from_tiles(tiles, 2, 4, 6, 8), x)


def test_tile_counts_come_from_the_smallest_divisors_and_the_generator():
    g = torch.Generator().manual_seed(0)
    assert random_divisor(8, 32, 2, g) == 1 and random_divisor(7, 2, 5, g) == 1 and random_divisor(64, 32, 1, g) == 2
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())  # one option: nothing drawn
    assert random_divisor(64, 32, 2, g) == 2  # options 2 and 1; randint(0, 1) is always 0
    picks = {random_divisor(48, 8, 3, g) for _ in range(50)}
    assert picks == {6, 4}  # ComfyUI's randint(0, n - 1) never picks the last of the n options
    torch.manual_seed(5)
    want = [plain_divisor(48, 8, 4) for _ in range(20)]
    g = torch.Generator().manual_seed(5)
    assert [random_divisor(48, 8, 4, g) for _ in range(20)] == want


# -- sampling runs on the SD1 fixture ------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    return SimpleNamespace(fx=fx, model=DiffusionModel.from_unet(fx.unet, "sd1", "epsilon"),
                           pos=te.encode("a photo of a cat"), neg=te.encode("blurry"))


def _sample(sd1, model, h=8, w=8, seed=3, batch=1):
    return sample(model, sd1.pos, sd1.neg, {"samples": torch.zeros(batch, 4, h, w)}, seed=seed, steps=3, cfg=5.0,
                  sampler="euler", scheduler="normal", device="cpu")["samples"]


def _comfy_sample(sd1, patch, h=8, w=8, seed=3, batch=1):
    """The plain model with ComfyUI's attention and patches, the global generator as ComfyUI's KSampler
    leaves it (seeded, then the initial noise drawn)."""
    unet = sd1.model.unet
    layers = self_attentions(unet)
    saved = [layer.processor for layer in layers]
    shape = [None]
    hook = unet.register_forward_pre_hook(lambda m, a, k: shape.__setitem__(0, list((a[0] if a else k["sample"]).shape)),
                                          with_kwargs=True)
    try:
        for layer in layers:
            layer.set_processor(ComfyAttention(*patch, shape))
        torch.manual_seed(seed)
        torch.randn(batch, 4, h, w)
        return _sample(sd1, sd1.model, h, w, seed, batch)
    finally:
        hook.remove()
        for layer, processor in zip(layers, saved, strict=True):
            layer.set_processor(processor)


@pytest.mark.parametrize("ratio,h,w,batch", [(0.5, 8, 8, 1), (0.3, 12, 8, 2)])
def test_tome_run_is_comfyuis(sd1, ratio, h, w, batch):
    before = [layer.processor for layer in self_attentions(sd1.model.unet)]
    plain = _sample(sd1, sd1.model, h, w, batch=batch)
    patched = run("TomePatchModel", model=sd1.model, ratio=ratio)["model"]
    got = _sample(sd1, patched, h, w, batch=batch)
    assert (got - plain).abs().max() > 1e-3
    torch.testing.assert_close(got, _comfy_sample(sd1, comfy_tome(ratio), h, w, batch=batch), rtol=1e-4, atol=1e-4)
    assert [layer.processor for layer in self_attentions(sd1.model.unet)] == before
    assert torch.equal(_sample(sd1, sd1.model, h, w, batch=batch), plain)


@pytest.mark.parametrize("args,h,w", [((32, 2, 0, False), 8, 8), ((32, 3, 1, True), 16, 8), ((32, 4, 1, False), 16, 16)])
def test_hypertile_run_is_comfyuis(sd1, args, h, w):
    plain = _sample(sd1, sd1.model, h, w)
    patched = run("HyperTile", model=sd1.model, tile_size=args[0], swap_size=args[1], max_depth=args[2],
                  scale_depth=args[3])["model"]
    got = _sample(sd1, patched, h, w)
    assert (got - plain).abs().max() > 1e-3
    torch.testing.assert_close(got, _comfy_sample(sd1, comfy_hypertile(*args), h, w), rtol=1e-4, atol=1e-4)
    assert torch.equal(_sample(sd1, sd1.model, h, w), plain)


def test_off_settings_leave_the_run_bit_identical(sd1):
    plain = _sample(sd1, sd1.model)
    tome = run("TomePatchModel", model=sd1.model, ratio=0.0)["model"]
    tiles = run("HyperTile", model=sd1.model, tile_size=64, swap_size=2, max_depth=3, scale_depth=False)["model"]
    assert torch.equal(_sample(sd1, tome), plain) and torch.equal(_sample(sd1, tiles), plain)


def test_seeds_repeat_and_differ(sd1):
    patched = run("TomePatchModel", model=sd1.model, ratio=0.6)["model"]
    a, b, c = _sample(sd1, patched, seed=3), _sample(sd1, patched, seed=3), _sample(sd1, patched, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- nodes and ComfyUI import ---------------------------------------------------------------------------
def test_nodes_match_comfyuis_inputs_and_leave_flow_models_alone(caplog):
    from nodegen.kernel.registry import default_registry

    reg = default_registry()
    spec = {n: {i.name: (i.default, i.min, i.max) for i in reg.get(n).inputs if i.name != "model"}
            for n in ("TomePatchModel", "HyperTile")}
    assert spec == {"TomePatchModel": {"ratio": (0.3, 0.0, 1.0)},
                    "HyperTile": {"tile_size": (256, 1, 2048), "swap_size": (2, 1, 128), "max_depth": (0, 0, 10),
                                  "scale_depth": (False, None, None)}}
    flux = DiffusionModel(torch.nn.Linear(2, 2), "flux", "flow")
    patched = run("HyperTile", model=run("TomePatchModel", model=flux, ratio=0.5)["model"])["model"]
    with patched.use("cpu") as net:
        assert torch.equal(net(torch.ones(1, 2)), flux.unet(torch.ones(1, 2)))
    assert "nothing changes" in caplog.text
    with pytest.raises(ValueError, match="TomePatchModel: input 'ratio'"):
        run("TomePatchModel", model=flux, ratio=1.5)


def test_comfyui_api_workflow_with_both_patches_runs(sd1, tmp_path):
    from nodegen.formats import open_any
    from nodegen.runtime.engine import Engine

    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    shutil.copy(sd1.fx.single_file, models / "checkpoints" / "tiny-sd1.safetensors")
    plain = json.loads((Path(__file__).parent / "data" / "comfy" / "txt2img.api.json").read_text())
    data = copy.deepcopy(plain)
    data["20"] = {"class_type": "TomePatchModel", "inputs": {"model": ["4", 0], "ratio": 0.5}}
    data["21"] = {"class_type": "HyperTile", "inputs": {"model": ["20", 0], "tile_size": 32, "swap_size": 2,
                                                        "max_depth": 1, "scale_depth": False}}
    data["3"]["inputs"]["model"] = ["21", 0]
    wf = open_any(data)
    assert wf.data["nodes"]["21"]["inputs"]["tile_size"] == 32 and wf.data["nodes"]["20"]["inputs"]["ratio"] == 0.5
    engine = Engine(models=models, input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    runs = [engine.run(open_any(plain)), engine.run(wf), engine.run(open_any(plain))]
    assert all(r.ok for r in runs), [r.problems for r in runs]
    before, patched, after = ([list(im.getdata()) for im in r.images] for r in runs)
    assert patched != before and after == before


def test_on_sdxl_tome_changes_nothing_and_hypertile_acts_one_level_down(tmp_path):
    """SDXL has no attention at the latent's own resolution: ComfyUI's ToMe and a depth-0 HyperTile
    leave it alone; HyperTile with max_depth 1 tiles the second level."""
    unet = fixture("sdxl", tmp_path).unet
    model = DiffusionModel.from_unet(unet, "sdxl", "epsilon")
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 4, 192, generator=g)
    added = {"text_embeds": torch.randn(1, 128, generator=g), "time_ids": torch.randn(1, 6, generator=g)}

    def out(m):
        with torch.no_grad(), m.use("cpu") as u:
            return u(x, 500, ctx, added_cond_kwargs=added).sample

    plain = out(model)
    tome = run("TomePatchModel", model=model, ratio=0.9)["model"]
    shallow = run("HyperTile", model=model, tile_size=32, swap_size=2, max_depth=0, scale_depth=False)["model"]
    deep = run("HyperTile", model=model, tile_size=32, swap_size=2, max_depth=1, scale_depth=False)["model"]
    assert torch.equal(out(tome), plain) and torch.equal(out(shallow), plain)
    assert (out(deep) - plain).abs().max() > 1e-4


def test_combines_with_self_attention_guidance(sd1):
    """SAG keeps the middle block's attention map over the patched processors (a HyperTile reaching the
    middle block, and ToMe), and everything is restored after."""
    before = [layer.processor for layer in self_attentions(sd1.model.unet)]
    sag = run("SelfAttentionGuidance", model=sd1.model, scale=0.5, blur_sigma=2.0)["model"]
    tiled = run("HyperTile", model=run("TomePatchModel", model=sd1.model, ratio=0.5)["model"], tile_size=32,
                swap_size=2, max_depth=1, scale_depth=False)["model"]
    both = run("SelfAttentionGuidance", model=tiled, scale=0.5, blur_sigma=2.0)["model"]
    got, alone = _sample(sd1, both, 16, 16), _sample(sd1, sag, 16, 16)
    assert torch.isfinite(got).all() and (got - alone).abs().max() > 1e-3
    assert [layer.processor for layer in self_attentions(sd1.model.unet)] == before
