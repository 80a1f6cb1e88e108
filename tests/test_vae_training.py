"""VAE training beyond the causal default: the GAN loss, sharding (with the discriminator),
and the factorized variant through the same loop. (Apart from test_vae.py so the two halves
run on different test workers.)"""
import jax
import numpy as np

from test_train import _run_logged
from conftest import vae_config
from videogen import checkpoints
from videogen.data import pipeline
from videogen.training import loop
from videogen.training.metrics import read_metrics

# Two levels (2× space and time) instead of the test config's four: what these tests prove
# does not depend on depth, and XLA's compile time (most of their cost) grows with the
# number of layers (initialising every parameter is its own random-number program).
SHALLOW = {"vae.block_channels": (8, 16), "vae.spatial_levels": 1, "vae.temporal_levels": 1}


def test_sharded_vae_step_with_gan_equals_single_device_step():
  """FSDP over conv output channels and data parallelism change nothing but the layout; the
  GAN term switches on after `vae.disc.start_step` and trains the (sharded) discriminator."""
  batch = next(iter(pipeline.make_dataset(vae_config())))
  # See test_train for adam_eps: compare sharding, not Adam's conditioning.
  common = {**SHALLOW, "train.adam_eps": 1e-3, "vae.disc.enabled": True,
            "vae.disc.start_step": 1}
  sharded, sharded_rows = _run_logged(vae_config(**common, **{"mesh.data": 2, "mesh.fsdp": 2}),
                               jax.devices()[:4], batch, 2)
  single, single_rows = _run_logged(vae_config(**common, **{"mesh.data": 1}), jax.devices()[:1],
                             batch, 2)
  np.testing.assert_allclose([r["loss"] for r in sharded_rows],
                             [r["loss"] for r in single_rows], rtol=1e-5)
  assert single_rows[0]["gan_weight"] == 0.0 and single_rows[1]["gan_weight"] > 0.0
  assert np.isfinite([r["disc_loss"] for r in single_rows]).all()
  assert set(sharded.params) == {"vae", "discriminator"}
  kernel = sharded.params["vae"]["decoder"]["conv_in"]["conv"]["kernel"]
  assert kernel.addressable_shards[0].data.shape[-1] == kernel.shape[-1] // 2
  for a, b in zip(jax.tree.leaves(sharded.params["vae"]), jax.tree.leaves(single.params["vae"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  # Discriminator conv biases feed straight into GroupNorm, so their true gradient is ~0 and
  # what is left is reduction-order noise (measured: |bias| ~2e-5, differences ~4e-5).
  for a, b in zip(jax.tree.leaves(sharded.params["discriminator"]),
                  jax.tree.leaves(single.params["discriminator"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


def test_factorized_variant_trains_through_the_same_loop(tmp_path):
  config = vae_config(**{**SHALLOW, "vae.variant": "factorized",
                         "vae.factorized.spatial_latent_channels": 4,
                         "vae.factorized.temporal_block_channels": (8, 8),
                         "train.num_steps": 2, "checkpoint.every_steps": 2})
  final = loop.train(config, str(tmp_path))
  assert set(final.params) == {"spatial_encoder", "temporal_encoder", "spatial_decoder",
                               "temporal_decoder"}
  assert np.isfinite([m["loss"] for m in read_metrics(str(tmp_path)) if "loss" in m]).all()
  assert len(checkpoints.load_metadata(str(tmp_path))["latent_stats"]["std"]) == 4
