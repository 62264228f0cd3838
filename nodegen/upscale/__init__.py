"""Super-resolution models (UPSCALE_MODEL): safe loading through spandrel
(:mod:`nodegen.upscale.model`), tiled inference with feathered overlaps
(:mod:`nodegen.upscale.tiling`), model-file helpers shared by loader nodes
(:mod:`nodegen.models.resolve`) and random-weight fixtures (:mod:`tests.support.upscale_fixtures`)."""
