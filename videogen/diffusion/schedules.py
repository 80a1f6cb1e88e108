"""DDPM noise schedules: cumulative signal fractions ᾱ_t for t = 0 … T-1."""
import numpy as np

SCHEDULES = ("linear", "cosine")


def alphas_cumprod(schedule: str, num_timesteps: int) -> np.ndarray:
  if schedule == "linear":  # Ho et al. 2020, β from 1e-4 to 0.02 at T = 1000
    scale = 1000 / num_timesteps
    betas = np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)
  elif schedule == "cosine":  # Nichol & Dhariwal 2021
    s = 0.008
    f = np.cos((np.arange(num_timesteps + 1) / num_timesteps + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1 - f[1:] / f[:-1], 0, 0.999)
  else:
    raise ValueError(f"diffusion.schedule={schedule!r}; choose from {SCHEDULES}")
  return np.cumprod(1 - betas)
