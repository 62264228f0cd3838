"""Style: Gatys neural style transfer with a VGG-19 (:mod:`nodegen.style.vgg`,
:mod:`nodegen.style.gatys`), AdaIN on latents (:mod:`nodegen.style.adain`) and colour transfer
between images (:mod:`nodegen.style.color`)."""
