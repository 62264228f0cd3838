"""CLIP in the loop: load CLIPs (full, or image towers) from the user's folders, score and rank
images against texts or reference images, and guide sampling with a CLIP.

* :mod:`nodegen.clip.layout`: recognise transformers / open_clip state dicts, derive configs.
* :mod:`nodegen.clip.load`: :func:`load_clip` (CLIP_MODEL), :func:`load_clip_vision` (CLIP_VISION).
* :mod:`nodegen.clip.vision`: :class:`ClipVision`, :class:`ClipVisionOutput`.
* :mod:`nodegen.clip.model`: :class:`ClipModel`.
* :mod:`nodegen.clip.score`: CLIP scores (100 x cosine similarity) and ranking.
* :mod:`nodegen.clip.guidance`: CLIP-guided sampling as a denoiser hook.
"""
