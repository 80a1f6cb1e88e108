"""Text-to-video generation from trained params: text conditioning → jitted, sharded sampler
→ uint8.

Shared by the `sample` CLI, the benchmark and evaluation; it never imports the training code.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videogen import checkpoints
from videogen.config import exit_with_error
from videogen.models.text_to_video import TextToVideo
from videogen.diffusion import samplers
from videogen.diffusion.objectives import from_config as diffusion_from_config
from videogen.models.text_to_video import build_model, param_shardings
from videogen.parallel import mesh as mesh_lib
from videogen.text.conditioning import TextConditioning
from videogen.vae.latents import FrozenVae


@dataclasses.dataclass
class Generator:
  """A loaded model ready to sample. Build with `Generator.load(path)`."""

  config: ml_collections.ConfigDict
  model: TextToVideo
  params: dict
  mesh: jax.sharding.Mesh
  text: TextConditioning
  vae: FrozenVae | None = None  # set when the model lives in a VAE's latent space
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False)

  @classmethod
  def load(cls, path: str, mesh_config: ml_collections.ConfigDict | None = None) -> "Generator":
    """From a training workdir (EMA of the latest step) or an export directory."""
    config = checkpoints.load_config(path)
    mesh = mesh_lib.create_mesh(mesh_config or config.mesh)
    rules = mesh_lib.rules_from_config(config.mesh)
    text = TextConditioning.create(config, path, mesh, rules)
    model = build_model(config, text.model_vocab_size, text.dim)
    vae = FrozenVae.load(config.vae.checkpoint, mesh, rules) if config.vae.checkpoint else None
    latent_shape = vae and vae.latent_shape(config.data.num_frames, config.data.height,
                                            config.data.width)
    abstract, shardings = param_shardings(model, config, mesh, rules, latent_shape)
    with jax.set_mesh(mesh):
      params = checkpoints.load_ema_params(path, abstract, shardings)
    return cls(config, model, params, mesh, text, vae)

  def __call__(self, prompts: list[str], *, seed: int = 0, num_frames: int | None = None,
               height: int | None = None, width: int | None = None, steps: int | None = None,
               guidance: float | None = None, guidance_rescale: float | None = None,
               negative_prompt: str = "") -> np.ndarray:
    """Samples one video per prompt: uint8 `(N, T, H, W, 3)`. Unset options come from the
    checkpoint's config (its training clip shape and `sample.*`)."""
    c = self.config
    frames, height, width = (num_frames or c.data.num_frames, height or c.data.height,
                             width or c.data.width)
    if self.vae is None:
      shape = (len(prompts), frames, height, width, c.model.channels)
    else:
      shape = (len(prompts), *self.vae.latent_shape(frames, height, width))
    steps = steps or c.sample.steps
    guidance = c.sample.guidance if guidance is None else guidance
    if guidance_rescale is None:
      guidance_rescale = c.sample.get("guidance_rescale", 0.0)
    text = self.text.conditional(prompts)
    null_text = self.text.unconditional(len(prompts), negative_prompt)
    key = (shape, steps, float(guidance), float(guidance_rescale))
    if key not in self._compiled:
      self._compiled[key] = _compiled_sampler(c, self.model, self.mesh, *key)
    run = self._compiled[key]
    with jax.set_mesh(self.mesh):
      x0 = run(self.params, text, null_text, jax.random.PRNGKey(seed))
      if self.vae is not None:
        x0 = self.vae.decode(x0)
    return np.asarray(to_uint8(x0))


def load_or_exit(workdir: str | None, checkpoint: str | None = None) -> Generator:
  """For the CLIs: exactly one of a workdir or an export, else one `error:` line, exit 2."""
  if bool(workdir) == bool(checkpoint):
    exit_with_error("pass exactly one of --workdir DIR or --checkpoint EXPORT_DIR")
  try:
    return Generator.load(workdir or checkpoint)
  except FileNotFoundError as e:  # no checkpoint, no tokenizer, no T5 weights
    exit_with_error(str(e))


def to_uint8(x: jax.Array) -> jax.Array:
  return jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)


def _compiled_sampler(config, model, mesh, shape, steps, guidance, guidance_rescale):
  diffusion = diffusion_from_config(config.diffusion)
  rules = mesh_lib.rules_from_config(config.mesh)

  def run(params, text, null_text, key):
    with nn.logical_axis_rules(rules):
      noise_key, sampler_key = jax.random.split(key)
      noise = jax.random.normal(noise_key, shape, jnp.float32)

      def denoise(x, t, text_mask_drop):
        return model.apply({"params": params}, x, t, *text_mask_drop)

      return samplers.sample(diffusion, denoise, noise, text, null_text, steps=steps,
                             guidance=guidance, key=sampler_key, eta=config.sample.eta,
                             shift=config.sample.get("shift"),
                             guidance_rescale=guidance_rescale)

  # Prompts are replicated (tiny); the video batch is split over data × fsdp when it divides.
  batch_axes = mesh.shape["data"] * mesh.shape["fsdp"]
  out = mesh_lib.batch_sharding(mesh) if shape[0] % batch_axes == 0 else mesh_lib.replicated(mesh)
  return jax.jit(run, out_shardings=out)
