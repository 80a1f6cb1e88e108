"""The DiT train step over pre-encoded inputs: VAE latents and frozen text-encoder states.

This is the step a large run trains once `encode_dataset` and `encode_text` have cached its
inputs: no encoder runs inside it. `aot` compiles it for a target topology and `bench` times
it for the latent presets, so both measure the same program.
"""
import dataclasses
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from videogen.diffusion.objectives import from_config as diffusion_from_config
from videogen.models.text_to_video import build_model, example_inputs
from videogen.training import state as state_lib
from videogen.training.step import jit_train_step

# The 4×8×8 causal VAE: 1 + (T − 1)/4 latent frames, 8× fewer pixels per side.
VAE_TIME, VAE_SPACE = 4, 8


@dataclasses.dataclass
class EncodedStep:
  init_params: Callable[[jax.Array], Any]   # key → logically boxed params
  tx: Any
  build_step: Callable                      # (state_shardings, batch_sharding) → step
  batch_shapes: dict[str, jax.ShapeDtypeStruct]


def input_grid(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(T, H, W) the DiT sees: the clip itself for a pixel model (3 channels), else the VAE's
  latent grid of it."""
  data = config.data
  if config.model.channels == 3:
    return data.num_frames, data.height, data.width
  return 1 + (data.num_frames - 1) // VAE_TIME, data.height // VAE_SPACE, data.width // VAE_SPACE


def encoded_step(config: ml_collections.ConfigDict, rules) -> EncodedStep:
  grid = input_grid(config)
  model = build_model(config, 0, config.model.text_dim)
  inputs = example_inputs(config, model, latent_shape=(*grid, config.model.channels))
  tx = state_lib.make_optimizer(config.train, config.model.lora_rank)
  b, length = config.train.batch_size, config.text.max_length
  shapes = {"video": jax.ShapeDtypeStruct((b, *grid, config.model.channels), np.float32),
            "text_embedding": jax.ShapeDtypeStruct((b, length, config.model.text_dim),
                                                   np.float32),
            "text_mask": jax.ShapeDtypeStruct((b, length), np.bool_)}

  def build_step(state_shardings, batch_sharding):
    return jit_train_step(config, model, diffusion_from_config(config.diffusion), tx, None,
                          state_shardings, batch_sharding, rules)

  return EncodedStep(init_params=lambda key: model.init(key, *inputs)["params"], tx=tx,
                     build_step=build_step, batch_shapes=shapes)
