"""Camera control (Plücker rays, the zero-initialised adapter, the synthetic source's cameras)
and trainable frame conditioning (given frames as input channels, masked training)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturbed, tiny_config, word_features
from videogen.data import pipeline, synthetic
from videogen.diffusion.conditions import training_frame_masks
from videogen.diffusion.objectives import Diffusion
from videogen.models import camera
from videogen.models.text_to_video import build_model, example_inputs


def test_plucker_coordinates_describe_each_ray_whatever_point_on_it():
  cameras = jnp.asarray(np.stack([camera.named_path(p, 4, 0.2)
                                  for p in ("pan_right", "zoom_in", "orbit")]))
  rays = camera.plucker_rays(cameras, (3, 5))
  assert rays.shape == (3, 4, 3, 5, 6)
  moment, direction = rays[..., :3], rays[..., 3:]
  np.testing.assert_allclose(jnp.linalg.norm(direction, axis=-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(jnp.sum(moment * direction, -1), 0.0, atol=1e-5)
  rotation = cameras[..., :9].reshape(3, 4, 3, 3)
  origin = -jnp.einsum("...ji,...j->...i", rotation, cameras[..., 9:])
  farther = origin[:, :, None, None] + 2.5 * direction  # another point on every ray
  np.testing.assert_allclose(jnp.cross(farther, direction), moment, atol=1e-5)
  # Static: every frame the same; pan and zoom: the rays change from frame to frame.
  static = camera.plucker_rays(jnp.asarray(camera.named_path("static", 3)), (2, 2))
  np.testing.assert_array_equal(static[0], static[2])
  assert all(float(jnp.abs(rays[k, 0] - rays[k, 3]).max()) > 0.05 for k in range(3))
  with pytest.raises(ValueError, match="not one of"):
    camera.named_path("spin", 3)


def test_synthetic_batches_carry_the_rendered_cameras():
  config = tiny_config(**{"data.synthetic.camera": "mixed", "data.synthetic.camera_speed": 0.1})
  world = pipeline.world_from_config(config.data)
  batch = pipeline.SyntheticExamples(world, 0)(np.arange(12))
  assert batch["camera"].shape == (12, 4, 12)
  clips = [synthetic.render_clip(world, 0, i) for i in range(12)]
  np.testing.assert_array_equal(batch["camera"][3], camera.synthetic_cameras(clips[3].camera))
  kinds = {("zoom" if c.camera[-1, 2] != 1 else "pan" if np.any(c.camera[-1, :2] != 0.5)
            else "static") for c in clips}
  assert kinds == {"static", "pan", "zoom"}
  assert all("camera" not in c.caption for c in clips)  # the camera input alone tells


def _model_and_params(config):
  model = build_model(config, 128, config.model.text_dim)
  inputs = example_inputs(config, model, batch=2)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), *inputs)["params"])
  return model, params, inputs


def test_camera_adapter_starts_as_the_base_model_and_then_follows_the_camera():
  base, base_params, inputs = _model_and_params(tiny_config())
  adapted, params, _ = _model_and_params(tiny_config(**{"model.camera": True}))
  base_params = perturbed(base_params, 0.3)
  merged = {**base_params, "dit": {**base_params["dit"], "camera": params["dit"]["camera"]}}
  pan = jnp.asarray(np.broadcast_to(camera.named_path("pan_left", 4, 0.2), (2, 4, 12)))
  np.testing.assert_array_equal(adapted.apply({"params": merged}, *inputs, cameras=pan),
                                base.apply({"params": base_params}, *inputs))
  trained = {**merged, "dit": {**merged["dit"], "camera": perturbed(params["dit"]["camera"], 0.3)}}
  static = adapted.apply({"params": trained}, *inputs)
  moved = adapted.apply({"params": trained}, *inputs, cameras=pan)
  assert float(jnp.abs(static - moved).max()) > 1e-3


def test_frame_conditioned_model_reads_given_frames_only_where_the_mask_says():
  config = tiny_config(**{"model.frame_condition": "concat"})
  model, params, (x, t, text, mask, drop) = _model_and_params(config)
  params = perturbed(params, 0.3)
  known = jax.random.normal(jax.random.PRNGKey(4), x.shape)
  first = jnp.zeros((2, 4, 1, 1, 1)).at[:, 0].set(1.0)
  run = lambda frames: model.apply({"params": params}, x, t, text, mask, drop, frames)  # noqa
  assert float(jnp.abs(run((known, first)) - run((2 * known, first))).max()) > 1e-3
  np.testing.assert_allclose(run((known, 0 * first)), run(None), atol=1e-6)
  np.testing.assert_allclose(run((known, 0 * first)), run((5 * known, 0 * first)), atol=1e-6)


def test_training_masks_follow_their_probabilities_and_loss_skips_given_frames():
  masks = np.asarray(training_frame_masks(jax.random.PRNGKey(0), 20000, 5,
                                          {"image_head": 0.5, "head": 0.1, "ends": 0.1}))
  kinds = {tuple(m) for m in masks.astype(int)}
  assert kinds == {(1, 0, 0, 0, 0), (1, 1, 0, 0, 0), (1, 0, 0, 0, 1), (0, 0, 0, 0, 0)}
  assert abs((masks.sum(1) == 0).mean() - 0.3) < 0.02 and abs(masks[:, 4].mean() - 0.1) < 0.01
  diffusion = Diffusion()
  x0, noise = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 4, 3, 3, 3))
  t = jnp.array([0.3, 0.6])
  given = jnp.zeros((2, 4, 1, 1, 1)).at[:, 0].set(1.0)
  prediction = diffusion.target(x0, noise, t) + 0.1
  wrecked = prediction.at[:, 0].set(50.0)  # the given frame's prediction does not count
  assert float(diffusion.loss(wrecked, x0, noise, t, 1 - given)) == pytest.approx(
      float(diffusion.loss(prediction, x0, noise, t, 1 - given)))
  assert float(diffusion.loss(prediction, x0, noise, t, 1 - given)) == pytest.approx(0.01)


@pytest.mark.parametrize("overrides", [{"model.frame_condition": "replace"}])
def test_conditioned_and_camera_models_train(overrides):
  """(concat conditioning and the camera adapter train in tests/test_cli.py's run.)"""
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.training.tasks import build_task
  config = tiny_config(**overrides)
  mesh = mesh_lib.create_mesh(config.mesh, jax.devices()[:1])
  rules = mesh_lib.rules_from_config(config.mesh)
  task = build_task(config, mesh, rules)
  state, shardings = state_lib.create_train_state(task.init_params, task.tx, 0, mesh, rules)
  step = task.build_step(shardings, mesh_lib.batch_sharding(mesh), rules)
  batch = next(iter(pipeline.make_dataset(config, word_features(config))))
  with jax.set_mesh(mesh):
    batch = pipeline.to_global_batch(batch, mesh_lib.batch_sharding(mesh))
    before = jax.tree.map(np.asarray, state.params)
    for _ in range(3):  # step 0 has learning rate 0 (warm-up); the AdaLN-Zero output layer
      state, metrics = step(state, batch)  # must move before gradients reach the input
  assert np.isfinite(float(metrics["loss"]))
  name = "camera" if "model.camera" in overrides else "patch_embed"
  changed = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()),
                         state.params["dit"][name], before["dit"][name])
  assert max(jax.tree.leaves(changed)) > 0
