"""Style nodes: neural style transfer (Gatys et al., VGG-19 features), AdaIN on latents, and
colour transfer between images."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model


@node("ColorTransfer", category="style",
      description="Give an image the colours of a reference (Reinhard in Lab, or histogram matching).",
      inputs=[Input.link("image", T.IMAGE), Input.link("reference", T.IMAGE),
              Input.choice("method", ["reinhard_lab", "histogram"], "reinhard_lab"),
              Input.float("strength", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("image", T.IMAGE)], keywords=("color", "colour", "match", "grade"))
def color_transfer(ctx, image, reference, method="reinhard_lab", strength=1.0):
    from nodegen.style.color import color_transfer as run

    return run(image, reference, method, strength)


@node("LatentStyleAdaIN", category="style",
      description="Give each channel of a latent the mean and spread of a style latent (AdaIN).",
      inputs=[Input.link("content", T.LATENT), Input.link("style", T.LATENT),
              Input.float("strength", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("latent", T.LATENT)], keywords=("adain", "style"))
def latent_style_adain(ctx, content, style, strength=1.0):
    from nodegen.style.adain import adain_latent

    return adain_latent(content, style, strength)


@node("VGGLoader", category="style",
      description="Load VGG-19 weights (torchvision layout) as the feature extractor for style transfer.",
      inputs=[Input.file("model_name", "style_models", "auto", choices=choices_for("style_models"),
                         description="VGG-19 weights (features.N.weight ...) in style_models; 'auto': "
                                     "your VGG-19 file (a name with vgg19 in it) when there is one, "
                                     "else the built-in nodegen-demo-vgg")],
      outputs=[Output("style_model", T.VGG)],
      fingerprint=fingerprint_for("style_models", "model_name"), keywords=("vgg", "style"))
def vgg_loader(ctx, model_name):
    from nodegen.style.vgg import load_vgg19

    return load_vgg19(resolve_model(ctx.paths, "style_models", model_name, "VGGLoader", "model_name"))


@node("NeuralStyleTransfer", category="style",
      description="Repaint the content image in the style of another (Gatys et al. optimisation).",
      inputs=[Input.link("style_model", T.VGG), Input.link("content", T.IMAGE),
              Input.link("style", T.IMAGE),
              Input.float("content_weight", 1.0, min=0.0, max=1e6, step=0.1),
              Input.float("style_weight", 1e4, min=0.0, max=1e9, step=10.0),
              Input.int("iterations", 100, min=1, max=10000),
              Input.choice("optimizer", ["adam", "lbfgs"], "adam"),
              Input.float("learning_rate", 0.02, min=1e-5, max=10.0, step=0.001,
                          description="Adam step on [0,1] pixels; for lbfgs 1.0 is usual"),
              Input.choice("init", ["content", "style", "noise"], "content"),
              Input.seed("seed", 0, description="Noise for init 'noise'"),
              Input.string("content_layers", "relu4_2",
                           description="Comma-separated VGG layers (conv4_2, relu4_2, ...)"),
              Input.string("style_layers", "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")],
      outputs=[Output("image", T.IMAGE)], keywords=("gatys", "vgg", "style transfer"))
def neural_style_transfer(ctx, style_model, content, style, content_weight=1.0, style_weight=1e4,
                          iterations=100, optimizer="adam", learning_rate=0.02, init="content",
                          seed=0, content_layers="relu4_2",
                          style_layers="relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"):
    from nodegen.style.gatys import StyleSettings, style_transfer

    settings = StyleSettings(content_weight=content_weight, style_weight=style_weight,
                             iterations=iterations, optimizer=optimizer,
                             learning_rate=learning_rate, init=init, seed=seed,
                             content_layers=content_layers, style_layers=style_layers)

    def progress(step, total, loss, preview):
        if ctx is not None:
            ctx.progress(step, total, preview)

    device = getattr(ctx, "device", None) or "cpu"
    return style_transfer(style_model, content, style, settings, progress=progress, device=device)
