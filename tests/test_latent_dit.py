"""The DiT in a trained VAE's latent space: encoded in the step or pre-encoded, same result."""
import jax
import numpy as np
import pytest

from conftest import run_cli, tiny_config
from videogen.config import ConfigError
from videogen.data.encode_latents import encode_dataset
from videogen.sampling.generator import Generator
from videogen.training import loop
from videogen.training.metrics import read_metrics


@pytest.fixture(scope="module")
def vae_workdir(trained_vae):
  return trained_vae[0]


def latent_dit_config(vae_workdir, **overrides):
  # 5×16×16 pixels → 2×2×2×4 latents; patch (1, 2, 2) gives 2 tokens per clip.
  return tiny_config(**{"vae.checkpoint": vae_workdir, "model.channels": 4,
                        "model.patch_size": (1, 2, 2), "data.num_frames": 5,
                        "data.height": 16, "data.width": 16, "data.synthetic.num_clips": 16,
                        "train.num_steps": 3, "checkpoint.every_steps": 3, **overrides})


@pytest.fixture(scope="module")
def in_step_run(vae_workdir, tmp_path_factory):
  """(workdir, final state) of a latent DiT that encodes its clips in the train step; the
  sampling test reads the same run (each run compiles an init and a step: ~15 s)."""
  workdir = str(tmp_path_factory.mktemp("in_step"))
  return workdir, loop.train(latent_dit_config(vae_workdir), workdir)


def test_pre_encoded_latents_train_exactly_like_encoding_in_the_step(vae_workdir, in_step_run,
                                                                      tmp_path):
  in_step_dir, in_step = in_step_run
  config = latent_dit_config(vae_workdir)
  encode_dataset(config, str(tmp_path / "latents"), num_clips=16, batch_size=8)
  cached_config = latent_dit_config(vae_workdir, **{"data.source": "latents",
                                                    "data.latents_path": str(tmp_path / "latents")})
  cached = loop.train(cached_config, str(tmp_path / "cached"))
  losses = [[m["loss"] for m in read_metrics(run) if "loss" in m]
            for run in (in_step_dir, str(tmp_path / "cached"))]
  assert len(losses[0]) == 3
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(in_step.params), jax.tree.leaves(cached.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_sampling_decodes_latents_to_pixel_video(in_step_run):
  generator = Generator.load(in_step_run[0])
  video = generator(["a red circle moving right"], steps=2)
  assert video.shape == (1, 5, 16, 16, 3) and video.dtype == np.uint8
  assert video.std() > 0


def test_a_dit_that_does_not_fit_its_vae_is_a_config_error(vae_workdir, tmp_path):
  with pytest.raises(ConfigError, match="4 latent channels"):
    loop.train(latent_dit_config(vae_workdir, **{"model.channels": 3}), str(tmp_path))
  with pytest.raises(ConfigError, match="latent height=2 .* not divisible"):
    loop.train(latent_dit_config(vae_workdir, **{"model.patch_size": (1, 4, 4)}), str(tmp_path))


def test_encode_dataset_cli_needs_a_vae(tmp_path):
  result = run_cli("videogen.encode_dataset", "--config", "configs/tiny.py:test", "--output",
                   str(tmp_path / "latents"))
  assert result.returncode == 2
  assert result.stderr == "error: --config must name a VAE: set vae.checkpoint\n"


def test_frozen_vae_tile_sizes_are_pixels_for_encode_and_decode(vae_workdir):
  from videogen.parallel import mesh as mesh_lib
  from videogen.vae.latents import FrozenVae
  mesh = mesh_lib.create_mesh({"data": 1, "fsdp": 1, "tensor": 1, "sequence": 1},
                              jax.devices()[:1])
  vae = FrozenVae.load(vae_workdir, mesh, ())
  video = np.random.default_rng(0).uniform(-1, 1, (1, 5, 16, 24, 3)).astype(np.float32)
  whole_moments, whole_video = vae.encode_moments(video), vae.decode(np.ones((1, 2, 2, 3, 4)))
  # 8-pixel tiles: encode runs 2×3 pixel tiles of one latent each, decode 2×3 one-latent tiles
  # of 8×8 pixels; the blend reassembles the full frame either way.
  vae.config.vae.update(tile=8, tile_overlap=0)
  tiled_moments = vae.encode_moments(video)
  tiled_video = vae.decode(np.ones((1, 2, 2, 3, 4)))
  assert tiled_moments.shape == whole_moments.shape and tiled_video.shape == whole_video.shape
  assert np.isfinite(tiled_moments).all() and np.isfinite(tiled_video).all()
  assert np.abs(tiled_moments - whole_moments).max() > 1e-4  # it really tiled
  vae.config.vae.update(tile=32, tile_overlap=8)  # larger than the frame: the one-shot pass
  np.testing.assert_allclose(vae.encode_moments(video), whole_moments, atol=1e-5)
  np.testing.assert_allclose(vae.decode(np.ones((1, 2, 2, 3, 4))), whole_video, atol=1e-5)
