"""Neural style transfer: VGG-19 loading in torchvision's layout, optimisation behaviour with
random weights (loss falls, output moves towards the style), progress, cancellation, errors."""

from __future__ import annotations

import pytest
import torch

from nodegen.kernel.context import Cancelled, CancelToken, RunContext
from nodegen.models.paths import ModelPaths
from nodegen.style.gatys import StyleSettings, style_transfer
from nodegen.style.vgg import load_vgg19, random_vgg19_state_dict

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("models")
    (root / "style_models").mkdir()
    save_file(random_vgg19_state_dict(0, width_div=8, blocks=4), str(root / "style_models" / "vgg_tiny.safetensors"))
    torch.save({"state_dict": random_vgg19_state_dict(1, width_div=8, blocks=4)},
               root / "style_models" / "vgg_tiny.pth")
    return root


def ctx_for(root, progress=None, cancel=None):
    return RunContext(node_id="3", node_title="NST", device="cpu", models=None,
                      paths=ModelPaths([root], use_env=False, use_config=False), output_dir=str(root),
                      input_dir=str(root), temp_dir=str(root), workflow=None,
                      cancel=cancel or CancelToken(), _progress=progress)


def pictures():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    content = torch.stack([xx, yy, 0.5 * torch.ones_like(xx)], -1)[None] * 0.8 + 0.1
    stripes = ((torch.arange(32) // 3) % 2).float()
    style = torch.stack([stripes.expand(32, 32), 1 - stripes.expand(32, 32),
                         torch.rand(32, 32, generator=g)], -1)[None]
    return content, style


def test_torchvision_layout_matches_torchvision(tmp_path):
    """A VGG-19 features state dict made by torchvision itself loads and computes the same."""
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    with torch.device("meta"):  # skip torchvision's slow init of 20 M weights; fill them below
        feats = make_layers(cfgs["E"], batch_norm=False).eval()
    feats = feats.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in feats.named_parameters():
            p.normal_(0, (2 / (p[0].numel())) ** 0.5 if name.endswith("weight") else 0.01)
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    vgg = load_vgg19(path)
    assert vgg.available[-1] == "pool5" and len(vgg.convs) == 16
    x = torch.rand(1, 3, 32, 32)
    norm = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    got = vgg(x, {"relu1_1", "conv4_2", "relu5_1"})
    with torch.no_grad():
        assert torch.allclose(got["relu1_1"], feats[:2](norm), atol=1e-5)
        assert torch.allclose(got["conv4_2"], feats[:22](norm), atol=1e-4)
        assert torch.allclose(got["relu5_1"], feats[:30](norm), atol=1e-4)


def test_loss_decreases_and_output_moves_to_style(root):
    vgg = load_vgg19(root / "style_models" / "vgg_tiny.safetensors")
    content, style = pictures()
    losses, previews = [], []
    s = StyleSettings(content_weight=1.0, style_weight=1e3, iterations=20, optimizer="adam",
                      learning_rate=0.01, style_layers="relu1_1,relu2_1,relu3_1,relu4_1")
    out = style_transfer(vgg, content, style, s,
                         progress=lambda i, n, loss, p: (losses.append(loss), previews.append(p)))
    assert out.shape == content.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert len(losses) == 20 and losses[-1] < 0.5 * losses[0]
    drops = sum(b <= a for a, b in zip(losses, losses[1:], strict=False))
    assert drops >= 0.8 * (len(losses) - 1)  # mostly monotone
    assert (out - content).abs().mean() > 0.02  # the picture changed
    assert sum(p is not None for p in previews) == 10 and torch.equal(previews[-1], out)
    # its Gram statistics moved towards the style's
    from nodegen.style.gatys import gram

    layers = {"relu1_1", "relu2_1", "relu3_1", "relu4_1"}

    def gdist(img):
        f = vgg(img.permute(0, 3, 1, 2).contiguous(), layers)
        fs = vgg(style.permute(0, 3, 1, 2).contiguous(), layers)
        return sum(float((gram(f[k]) - gram(fs[k])).pow(2).mean()) for k in layers)

    assert gdist(out) < 0.5 * gdist(content)


def test_lbfgs_also_descends(root):
    vgg = load_vgg19(root / "style_models" / "vgg_tiny.pth")
    content, style = pictures()
    losses = []
    s = StyleSettings(style_weight=1e3, iterations=8, optimizer="lbfgs", learning_rate=1.0,
                      style_layers="relu1_1,relu2_1,relu3_1")
    style_transfer(vgg, content, style, s, progress=lambda i, n, loss, p: losses.append(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_same_content_and_style_stays_close(root):
    """content == style is already optimal: nothing moves. A mirrored style (almost the same Gram
    matrices) moves the picture far less than a different style does."""
    vgg = load_vgg19(root / "style_models" / "vgg_tiny.safetensors")
    content, style = pictures()
    s = StyleSettings(style_weight=1e3, iterations=10, learning_rate=0.01,
                      style_layers="relu1_1,relu2_1,relu3_1,relu4_1")
    assert torch.equal(style_transfer(vgg, content, content, s), content)
    mirrored = (style_transfer(vgg, content, content.flip(2), s) - content).abs().mean()
    other = (style_transfer(vgg, content, style, s) - content).abs().mean()
    assert mirrored < 0.4 * other


def test_node_progress_cancel_and_errors(root):
    from nodegen.nodes.style import neural_style_transfer, vgg_loader

    seen = []
    ctx = ctx_for(root, progress=lambda nid, s, t, p: seen.append((s, t, p is not None)))
    vgg = vgg_loader.run(ctx, model_name="vgg_tiny.safetensors")
    content, style = pictures()
    content2 = torch.cat([content, content.flip(2)])
    out = neural_style_transfer.run(ctx, style_model=vgg, content=content2, style=style,
                                    iterations=4, style_layers="relu1_1,relu2_1",
                                    content_layers="conv3_2")
    assert out.shape == (2, 32, 32, 3)
    assert [s for s, _t, _p in seen] == list(range(1, 9)) and all(t == 8 for _s, t, _p in seen)
    token = CancelToken()

    def cancel_at_3(nid, s, t, p):
        if s == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        neural_style_transfer.run(ctx_for(root, cancel_at_3, token), style_model=vgg,
                                  content=content, style=style, iterations=50,
                                  style_layers="relu1_1")
    with pytest.raises(ValueError, match="style layer 'relu5_1' is deeper than the layers"):
        neural_style_transfer.run(ctx, style_model=vgg, content=content, style=style,
                                  iterations=1)  # default style layers include relu5_1
    with pytest.raises(ValueError, match="'conv9_9' is not a VGG-19 layer"):
        neural_style_transfer.run(ctx, style_model=vgg, content=content, style=style,
                                  iterations=1, content_layers="conv9_9", style_layers="relu1_1")
    with pytest.raises(ValueError, match="VGGLoader: model_name 'missing.pth' was not found"):
        vgg_loader.run(ctx, model_name="missing.pth")
    bad = root / "style_models" / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"features.0.weight": torch.zeros(8, 4, 3, 3), "features.0.bias": torch.zeros(8)}, str(bad))
    with pytest.raises(ValueError, match=r"features.0 \(conv1_1\) has shape"):
        vgg_loader.run(ctx, model_name="bad.safetensors")
