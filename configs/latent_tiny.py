"""The demo DiT in the latent space of `configs/vae_tiny.py`: 9×32×32 clips are 3×4×4×8
latents, 48 tokens with patch (1, 1, 1) instead of the pixel model's 256.

    python -m videogen.train --config configs/vae_tiny.py --workdir runs/vae_tiny
    python -m videogen.train --config configs/latent_tiny.py --workdir runs/latent_tiny
    python -m videogen.sample --workdir runs/latent_tiny --prompt "a red circle moving right" \\
        --output out.mp4

`--config.vae.checkpoint=DIR` points at another VAE; `:cached` trains from records written by
`python -m videogen.encode_dataset --config configs/latent_tiny.py --output runs/latents_tiny`.
"""
from videogen.config import base_config


def get_config(arg: str | None = None):
  c = base_config()
  c.vae.update(checkpoint="runs/vae_tiny", chunk_latents=3)
  c.model.update(width=128, depth=4, num_heads=4, patch_size=(1, 1, 1), channels=8,
                 text_dim=64)
  c.data.update(num_frames=9, height=32, width=32)
  c.diffusion.update(shift=3.0)
  c.train.update(num_steps=1200, batch_size=16, learning_rate=2e-3, warmup_steps=100,
                 log_every=50)
  c.checkpoint.update(every_steps=400, keep=2)
  c.sample.update(guidance=1.5)
  if arg == "cached":
    c.data.update(source="latents", latents_path="runs/latents_tiny")
    c.data.synthetic.update(num_clips=20_000)
  elif arg:
    raise ValueError(f"configs/latent_tiny.py has no variant {arg!r} (choose '' or 'cached')")
  return c
