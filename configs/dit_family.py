"""Size presets of the three DiT layouts, for comparing backbones at real scale.

    python -m videogen.model_info --config configs/dit_family.py:XL     # params, FLOPs, memory
    python -m videogen.train --config configs/dit_family.py:stdit_xl --workdir RUN ...

DiT paper sizes (joint layout): S, B, L, XL. Field look-alikes (architecture and size; their
weights import through `videogen.convert` where a diffusers counterpart exists):
`cogvideox_2b`, `cogvideox_5b` (expert), `stdit_xl` (factorized, Open-Sora 1.2 STDiT3-XL/2),
`wan_1_3b` (joint, Wan 2.1 T2V-1.3B). All are latent-space models over a 4×8×8 VAE
(`vae.checkpoint` must name one for training; sizes and counts do not need it), conditioned
on frozen T5-XXL states (4096 wide).
"""
from videogen.config import base_config

# (width, depth, heads) from the DiT paper (Peebles & Xie 2023, table 1).
DIT_SIZES = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}

LOOKALIKES = {
    # CogVideoX-2B: 30 expert blocks of 30×64 heads, time embedding 512, LayerNorm q/k.
    "cogvideox_2b": dict(layout="expert", width=1920, depth=30, num_heads=30, channels=16,
                         time_embed_dim=512, time_frequency_dim=1920, qk_norm="layer",
                         pooled_text=False, norm_eps=1e-5),
    # CogVideoX-5B: 42 blocks of 48×64 heads, 3D RoPE.
    "cogvideox_5b": dict(layout="expert", width=3072, depth=42, num_heads=48, channels=16,
                         time_embed_dim=512, time_frequency_dim=3072, qk_norm="layer",
                         pooled_text=False, norm_eps=1e-5),
    # Open-Sora 1.2 STDiT3-XL/2: 28 (spatial, temporal) block pairs at DiT-XL width, each a
    # full block (attention, cross-attention, MLP), adaLN-single.
    "stdit_xl": dict(layout="factorized", width=1152, depth=28, num_heads=16, channels=4,
                     adaln="single", pooled_text=False, text_projection="mlp",
                     rope_split="wan"),  # 72-channel heads: 24 per axis
    # Wan 2.1 T2V-1.3B: 30 joint blocks, FFN 8960, adaLN-single, RMSNorm q/k across heads.
    "wan_1_3b": dict(layout="joint", width=1536, depth=30, num_heads=12, channels=16,
                     mlp_ratio=8960 / 1536, adaln="single", pooled_text=False,
                     text_projection="mlp", qk_norm="rms_across_heads", rope_split="wan"),
}


def get_config(arg: str | None = None):
  c = base_config()
  name = arg or "B"
  if name in DIT_SIZES:
    width, depth, heads = DIT_SIZES[name]
    # DiT's own additive sin-cos positions (XL's 72-channel heads do not split for 3D RoPE).
    c.model.update(layout="joint", width=width, depth=depth, num_heads=heads, channels=4,
                   pos_embed="sincos")
  elif name in LOOKALIKES:
    c.model.update(**LOOKALIKES[name])
  else:
    raise ValueError(f"configs/dit_family.py has no variant {name!r} "
                     f"(choose one of {list(DIT_SIZES) + list(LOOKALIKES)})")
  # 49 frames at 480×720 → 13×60×90 latents; patch 1×2×2 → 17,550 tokens.
  c.model.update(patch_size=(1, 2, 2), text_dim=4096, dtype="bfloat16", remat_policy="full")
  c.data.update(num_frames=49, height=480, width=720)
  c.text.update(max_length=226, tokenizer="sentencepiece", encoder="t5")
  c.train.update(batch_size=8, learning_rate=1e-4)
  return c
