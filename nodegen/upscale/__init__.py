"""Super-resolution models (UPSCALE_MODEL): safe loading through spandrel and tiled inference
(:mod:`nodegen.upscale.model`, on the shared tiler :mod:`nodegen.image.tiling`)."""
