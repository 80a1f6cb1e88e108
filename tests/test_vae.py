import json

import jax
import numpy as np
import pytest

from conftest import run_cli
from videogen import checkpoints
from videogen.parallel import mesh as mesh_lib
from videogen.training import state as state_lib
from videogen.training.metrics import read_metrics
from videogen.training.tasks import build_task
from videogen.vae import chunked
from videogen.vae.latents import init_params
from videogen.vae.model import Autoencoder, CodecSpec, VaeSpec


CAUSAL = VaeSpec("causal3d", (CodecSpec(latent_channels=4, block_channels=(8, 8, 8, 16),
                                        layers_per_block=1, norm_groups=4),))
FACTORIZED = VaeSpec("factorized", (
    CodecSpec(latent_channels=4, block_channels=(8, 8, 8, 8), layers_per_block=1, norm_groups=4,
              temporal_levels=0, time_kernel=1),
    CodecSpec(in_channels=4, latent_channels=4, block_channels=(8, 8, 8), layers_per_block=1,
              norm_groups=4, spatial_levels=0)))


@pytest.fixture(scope="module", params=[CAUSAL, FACTORIZED], ids=["causal3d", "factorized"])
def vae(request):
  model = Autoencoder(request.param)
  key = jax.random.PRNGKey(0)
  params = jax.jit(lambda k: init_params(model, k))(key)
  return model, jax.tree.map(np.asarray, params)


def _video(frames, height=16, width=24, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (1, frames, height, width, 3)).astype(
      np.float32)


@pytest.mark.parametrize("frames", [1, 5, 9, 17])
def test_shapes_follow_1_plus_4k_and_8x_space(vae, frames):
  """Traced, not compiled (a compile per shape was ~8 s here): XLA keeps a program's shapes,
  and the other tests run the 17-frame programs."""
  model, params = vae
  moments = jax.eval_shape(lambda v: chunked.encode(model, params, v), _video(frames))
  assert moments.shape == (1, 1 + (frames - 1) // 4, 2, 3, 8)
  latents = jax.ShapeDtypeStruct(moments.shape[:-1] + (4,), moments.dtype)
  assert jax.eval_shape(lambda z: chunked.decode(model, params, z), latents).shape == (
      1, frames, 16, 24, 3)


def test_changing_a_frame_never_changes_earlier_latents(vae):
  model, params = vae
  video = _video(17)
  changed = video.copy()
  changed[:, 9] += 0.5  # frame 9 belongs to latent frame 3 (frames 9-12)
  a, b = (np.asarray(chunked.encode(model, params, v)) for v in (video, changed))
  np.testing.assert_array_equal(a[:, :3], b[:, :3])
  assert np.abs(a[:, 3] - b[:, 3]).max() > 1e-3


@pytest.mark.parametrize("chunk_frames", [4, 8])
def test_chunked_encode_and_decode_equal_one_shot(vae, chunk_frames):
  model, params = vae
  video = _video(17, seed=1)
  one_shot = np.asarray(chunked.encode(model, params, video))
  # docs/vae.md's figure; measured 7e-7-1.6e-6 (moments up to ~1.8).
  np.testing.assert_allclose(chunked.encode(model, params, video, chunk_frames, on_host=True),
                             one_shot, atol=5e-6)
  latents = one_shot[..., :4]
  np.testing.assert_allclose(chunked.decode(model, params, latents, chunk_frames // 4),
                             chunked.decode(model, params, latents), atol=5e-6)


def test_tiling_blends_to_the_exact_answer_for_pointwise_maps_and_covers_every_pixel(vae):
  video = _video(5, 40, 56)
  np.testing.assert_allclose(chunked.tiled(lambda x: 2 * x, video, 16, 8, 1.0), 2 * video,
                             atol=1e-6)
  model, params = vae
  latents = np.asarray(chunked.encode(model, params, _video(5, 32, 48)))[..., :4]
  decode = lambda z: chunked.decode(model, params, z)
  whole = np.asarray(decode(latents))
  # A tile as large as the input is the one-shot pass; overlapping tiles stay close to it.
  np.testing.assert_allclose(chunked.tiled(decode, latents, 8, 2, 8.0), whole, atol=1e-5)
  tiled = chunked.tiled(decode, latents, 4, 2, 8.0)
  assert tiled.shape == whole.shape and np.isfinite(tiled).all()


def test_bad_inputs_get_one_line_errors(vae):
  model, params = vae
  with pytest.raises(ValueError, match="3-channel video; got 4 channels"):
    chunked.encode(model, params, np.zeros((1, 5, 16, 16, 4), np.float32))
  with pytest.raises(ValueError, match=r"1 \+ 4k frames; got 8"):
    chunked.encode(model, params, _video(8))
  with pytest.raises(ValueError, match="divisible by 8; got 12×16"):
    chunked.encode(model, params, _video(5, 12, 16))
  with pytest.raises(ValueError, match="positive multiple of 4"):
    chunked.encode(model, params, _video(9), chunk_frames=6)
  with pytest.raises(ValueError, match="4-channel latents; got 3"):
    chunked.decode(model, params, np.zeros((1, 2, 2, 2, 3), np.float32))


def test_training_raises_held_out_psnr(trained_vae):
  workdir, config = trained_vae
  # The run's own mesh, as training built it: the persistent compilation cache then serves
  # the init and evaluation programs the run compiled.
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = mesh_lib.rules_from_config(config.mesh)
  task = build_task(config, mesh, rules)
  initial, _ = state_lib.create_train_state(task.init_params, task.tx, config.seed, mesh, rules,
                                            task.init_compiler_options)
  before = task.evaluate(initial)
  after = [m for m in read_metrics(workdir) if "eval_psnr" in m][-1]
  assert after["step"] == 30
  assert after["eval_psnr"] > before["eval_psnr"] + 6.0, (before, after)
  assert after["eval_ssim"] > before["eval_ssim"] + 0.1, (before, after)


def test_latent_stats_are_measured_and_saved_with_the_checkpoint(trained_vae, tmp_path):
  workdir, _ = trained_vae
  stats = checkpoints.load_metadata(workdir)["latent_stats"]
  assert len(stats["mean"]) == len(stats["std"]) == 4
  assert all(s > 0 for s in stats["std"])
  run_cli("videogen.export", "--workdir", workdir, "--output", str(tmp_path / "out"),
          check=True)
  with open(tmp_path / "out" / "metadata.json") as f:
    assert json.load(f)["latent_stats"] == stats
