"""The diffusers -> LDM converter used by the fixtures (it lives in the package, since tools
also use it: :mod:`nodegen.models.ldm_export`)."""

from nodegen.models.ldm_export import (  # noqa: F401
    clip_l_to_ldm,
    convert_pipeline_to_ldm,
    open_clip_to_ldm,
    unet_to_ldm,
    vae_to_ldm,
)
