"""Architecture of the built-in demo model (``nodegen-demo-shapes``): an SD1-family LDM, scaled down."""

from __future__ import annotations

from nodegen.compat import torchvision as torchvision_fix

IMAGE_SIZE = 64
LATENT_SIZE = IMAGE_SIZE // 8
#: SD1's fixed latent scaling factor; the VAE is reparametrised so latents have ~unit std under it.
SCALING_FACTOR = 0.18215
TEXT_WIDTH = 64

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    # 64 channels at full resolution: with 32 GroupNorm groups, a 32-channel norm_out is an
    # instance norm, which erases flat colours (the decoder then cannot paint a plain background).
    block_out_channels=(64, 64, 128, 128),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=IMAGE_SIZE,
    scaling_factor=SCALING_FACTOR,
)

TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=TEXT_WIDTH,
    intermediate_size=4 * TEXT_WIDTH,
    num_hidden_layers=2,
    num_attention_heads=TEXT_WIDTH // 64,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=TEXT_WIDTH,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

UNET_CONFIG = dict(
    sample_size=LATENT_SIZE,
    in_channels=4,
    out_channels=4,
    # Two levels (8x8 and 4x4 latents) suit the 8x8 latent and a 1-thread CPU training budget.
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(64, 128),
    layers_per_block=1,
    cross_attention_dim=TEXT_WIDTH,
    attention_head_dim=8,
    norm_num_groups=32,
)

#: SD1's noise schedule.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    skip_prk_steps=True,
    trained_betas=None,
)


def build_models(vae_config=None, text_config=None, unet_config=None):
    """Fresh (randomly initialised) ``(vae, text_encoder, unet)``."""
    torchvision_fix.apply()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = AutoencoderKL(**(vae_config or VAE_CONFIG))
    text = CLIPTextModel(CLIPTextConfig(**(text_config or TEXT_CONFIG)))
    unet = UNet2DConditionModel(**(unet_config or UNET_CONFIG))
    return vae, text, unet
