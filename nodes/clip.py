"""CLIP in the loop: load CLIPs, encode images for image-prompt adapters, score and rank images
against texts or reference images, and guide any sampler with a CLIP.

CLIPVisionLoader and CLIPVisionEncode have ComfyUI's names, inputs and outputs, so published
IP-Adapter workflows map onto them. The library behind them is :mod:`nodegen.clip`.
"""

from __future__ import annotations

from typing import Any

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model

torch = lazy_import("torch")
preprocess = lazy_import("nodegen.clip.preprocess")


def _manager(ctx: Any):
    """The run's model manager (the engine's: loaded models are shared across runs)."""
    if getattr(ctx, "models", None) is None:
        raise RuntimeError("this run has no model manager: run nodes through an Engine or Executor, "
                           "or give RunContext(models=ModelManager())")
    return ctx.models


def _load(ctx, kind: str, name: str, node_type: str, vision_only: bool):
    from nodegen.clip.load import load_clip, load_clip_vision
    from nodegen.models.manager import file_key

    path = resolve_model(ctx.paths, kind, name, node_type, "clip_name")
    mgr = _manager(ctx)
    load = load_clip_vision if vision_only else load_clip
    try:
        return mgr.cached(("clip_vision" if vision_only else "clip", *file_key(path)),
                          lambda: load(path, manager=mgr))
    except ValueError as e:
        raise ValueError(f"{node_type}: clip_name {name!r}: {e}") from e


@node("CLIPModelLoader", category="loaders",
      description="Load a full CLIP (image and text towers) for scoring, ranking and CLIP guidance.",
      inputs=[Input.file("clip_name", "clip", choices=choices_for("clip"),
                         description="A CLIP in the clip folder (transformers or open_clip layout; file or folder)")],
      outputs=[Output("clip_model", T.CLIP_MODEL)],
      fingerprint=fingerprint_for("clip", "clip_name"),
      keywords=("clip", "score", "openai", "laion", "open_clip"))
def clip_model_loader(ctx, clip_name):
    return _load(ctx, "clip", clip_name, "CLIPModelLoader", vision_only=False)


@node("CLIPVisionLoader", category="loaders",
      description="Load a CLIP image tower (CLIP vision) for IP-Adapter and other image prompts.",
      inputs=[Input.file("clip_name", "clip_vision", choices=choices_for("clip_vision"),
                         description="A CLIP-vision model (or a full CLIP) in the clip_vision folder")],
      outputs=[Output("clip_vision", T.CLIP_VISION)],
      fingerprint=fingerprint_for("clip_vision", "clip_name"),
      keywords=("clip vision", "ip-adapter", "image prompt"))
def clip_vision_loader(ctx, clip_name):
    return _load(ctx, "clip_vision", clip_name, "CLIPVisionLoader", vision_only=True)


@node("CLIPVisionEncode", category="conditioning",
      description="Encode images with a CLIP image tower (embeddings and hidden states for image prompts).",
      inputs=[Input.link("clip_vision", T.CLIP_VISION), Input.link("image", T.IMAGE),
              Input.choice("crop", list(preprocess.CROPS), "center",
                           description="center: resize the short side and crop the middle; none: squash to a square")],
      outputs=[Output("clip_vision_output", T.CLIP_VISION_OUTPUT)],
      keywords=("clip vision", "ip-adapter", "image embeds"))
def clip_vision_encode(ctx, clip_vision, image, crop="center"):
    return clip_vision.encode(image, crop, ctx.device)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _scores(ctx, node_type: str, clip_model, images, text: str, reference, crop: str):
    """Scores ``[B, N]`` and the N column labels."""
    from nodegen.clip.score import clip_scores

    if reference is not None:
        labels = [f"reference {j}" for j in range(reference.shape[0])]
        return clip_scores(clip_model, images, references=reference, crop=crop, device=ctx.device), labels
    texts = _lines(text)
    if not texts:
        raise ValueError(f"{node_type}: text is empty and no reference image is connected; "
                         "give a prompt (one per line) or connect reference images")
    return clip_scores(clip_model, images, texts, crop=crop, device=ctx.device), texts


_SCORE_INPUTS = [
    Input.link("clip_model", T.CLIP_MODEL),
    Input.link("images", T.IMAGE),
    Input.string("text", "", multiline=True, description="Texts to score against, one per line"),
    Input.link("reference", T.IMAGE, optional=True,
               description="Reference images to score against instead of the texts"),
    Input.choice("crop", list(preprocess.CROPS), "center"),
]


@node("CLIPScore", category="clip",
      description="CLIP score (100 x cosine similarity) of every image against every text or reference image.",
      inputs=_SCORE_INPUTS,
      outputs=[Output("score", T.FLOAT, "Mean score over all pairs"),
               Output("best_score", T.FLOAT, "Highest score"),
               Output("best_index", T.INT, "Batch index of the image with the highest score"),
               Output("summary", T.STRING, "All scores, one line per image")],
      keywords=("clip score", "similarity", "evaluate", "metric"))
def clip_score(ctx, clip_model, images, text="", reference=None, crop="center"):
    from nodegen.clip.score import summary as score_summary

    scores, labels = _scores(ctx, "CLIPScore", clip_model, images, text, reference, crop)
    summary = score_summary(scores, labels)
    best = int(scores.max(1).values.argmax())
    ctx.ui(text=[summary], scores=scores.tolist())
    return float(scores.mean()), float(scores.max()), best, summary


@node("CLIPRankImages", category="clip",
      description="Keep the k images of a batch that best match the texts (or reference images), best first.",
      inputs=[*_SCORE_INPUTS,
              Input.int("k", 4, min=0, max=4096, description="How many to keep (0: all, sorted)"),
              Input.link("labels", T.STRING, optional=True,
                         description="One line per image naming it (LoadSweepImages' labels: the swept values)")],
      outputs=[Output("images", T.IMAGE, "The best k images, best first"),
               Output("best_score", T.FLOAT, "Score of the best image"),
               Output("summary", T.STRING, "Rank, batch index (or label) and score of each kept image"),
               Output("labels", T.STRING, "The kept images' labels (or batch indices), best first, one per line")],
      keywords=("rank", "select", "best of", "filter", "clip score", "sweep", "seeds"))
def clip_rank_images(ctx, clip_model, images, text="", reference=None, crop="center", k=4, labels=None):
    from nodegen.clip.score import rank

    scores, _ = _scores(ctx, "CLIPRankImages", clip_model, images, text, reference, crop)
    names = _labels(labels, images.shape[0])
    per_image = scores.mean(1)
    order = rank(per_image, k or None)
    summary = "\n".join(f"{r + 1}. {names[i]}: {float(per_image[i]):.2f}" for r, i in enumerate(order))
    ctx.ui(text=[summary], order=order, scores=[float(per_image[i]) for i in order])
    kept = images[torch.tensor(order, dtype=torch.long)]
    return kept, float(per_image[order[0]]), summary, "\n".join(names[i] for i in order)


def _labels(labels: str | None, n: int) -> list[str]:
    """The images' names: the ``labels`` lines, or ``image i``."""
    if labels is None:
        return [f"image {i}" for i in range(n)]
    lines = str(labels).splitlines()
    if len(lines) != n:
        raise ValueError(f"CLIPRankImages: input 'labels' has {len(lines)} line(s) for {n} image(s); "
                         "give one line per image")
    return lines


GRADIENTS = {"through model": True, "x0 prediction": False}


@node("CLIPGuidedModel", category="clip",
      description="Wrap a model so that every sampler step is steered towards a text (or reference images) by a CLIP.",
      inputs=[Input.link("model", T.MODEL), Input.link("clip_model", T.CLIP_MODEL), Input.link("vae", T.VAE),
              Input.string("text", "", multiline=True, description="What the picture should match"),
              Input.link("reference", T.IMAGE, optional=True,
                         description="Reference images to match instead of the text"),
              Input.float("scale", 100.0, min=0.0, max=100000.0, step=10.0,
                          description="Guidance strength (0: off, bit-identical to the plain model)"),
              Input.int("cutouts", 4, min=0, max=64,
                        description="Random cut-outs per image and step (0: the whole picture)"),
              Input.float("start_percent", 0.0, min=0.0, max=1.0, step=0.01,
                          description="Guide from this fraction of the schedule"),
              Input.float("end_percent", 1.0, min=0.0, max=1.0, step=0.01,
                          description="... to this fraction"),
              Input.int("decode_size", 224, min=32, max=2048, step=8,
                        description="Decode the predicted picture at most this large (bounds memory)"),
              Input.seed("seed", 0, description="Seed of the random cut-outs"),
              Input.choice("gradient", list(GRADIENTS), "through model",
                           description="through model: the published method (gradient through the UNet, "
                                       "sigma^2-scaled); x0 prediction: a cheaper step on the predicted picture"),
              Input.bool("normalise", False,
                         description="Rescale each picture's gradient to unit RMS: every guided step then moves "
                                     "the predicted latent by 'scale' (try 0.02-0.1)")],
      outputs=[Output("model", T.MODEL)],
      keywords=("clip guidance", "guided diffusion", "steer"))
def clip_guided_model(ctx, model, clip_model, vae, text="", reference=None, scale=100.0, cutouts=4,
                      start_percent=0.0, end_percent=1.0, decode_size=224, seed=0, gradient="through model",
                      normalise=False):
    from nodegen.clip.guidance import ClipGuidance, guided_model, image_target, text_target

    if start_percent > end_percent:
        raise ValueError(f"CLIPGuidedModel: start_percent ({start_percent}) is after end_percent ({end_percent})")
    if reference is not None:
        target = image_target(clip_model, reference, ctx.device)
    elif (text or "").strip():
        target = text_target(clip_model, text.strip(), ctx.device)
    else:
        raise ValueError("CLIPGuidedModel: text is empty and no reference image is connected")
    guidance = ClipGuidance(clip_model, vae, target, float(scale), int(cutouts), float(start_percent),
                            float(end_percent), int(decode_size), int(seed), through_model=GRADIENTS[gradient],
                            normalise=bool(normalise))
    return guided_model(model, guidance)
