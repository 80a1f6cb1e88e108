"""The whole sampler as one `jax.export` artifact (StableHLO), for serving without Python
model code:

    python -m videogen.export --workdir DIR --output OUT --format stablehlo

    OUT/sampler.stablehlo  `jax.export.Exported.serialize()`: every denoising step, guidance
                           and the noise draw, with the EMA params baked in as constants
    OUT/sampler.json       its inputs and output (shapes with "b", the symbolic batch) and the
                           sampler settings it was traced with (the config's `sample.*`)

`python -m videogen.sample --checkpoint OUT` samples from it (`sample_export`).

Inputs, in order: the conditional `(text, text_mask, text_drop)` triple, the guidance branch's
`(null_text, null_mask, null_drop)` (`TextConditioning.conditional` / `.unconditional`:
token ids or frozen-encoder states, so tokenising and T5 stay outside), and `key`, the
`uint32[2]` of `jax.random.PRNGKey(seed)` (`[0, seed]`). Output: `(b, T, H, W, C)` float32 in
the sampler's space, exactly `Generator.sample`'s (pixels in [-1, 1], or a VAE's normalised
latents; decoding is not included). Traced on one device, so it runs on any one device.
Params are constants (one self-contained file): a model needs a re-export for new weights, and
flatbuffers cap a file at 2 GB, so this suits models up to a few hundred million params.
"""
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videogen import checkpoints
from videogen import workdir as workdir_lib
from videogen.config import base_config
from videogen.data.frames import to_uint8
from videogen.data.synthetic import VOCABULARY
from videogen.parallel import mesh as mesh_lib
from videogen.sampling.generator import _compiled_sampler, unknown_words_warning
from videogen.text.conditioning import TextConditioning
from videogen.vae.latents import FrozenVae

SAMPLER_FILE = "sampler.stablehlo"
SIGNATURE_FILE = "sampler.json"
INPUTS = ("text", "text_mask", "text_drop", "null_text", "null_mask", "null_drop", "key")


def _spec(shape, dtype) -> dict:
  return {"shape": [str(n) if not isinstance(n, int) else n for n in shape],
          "dtype": jnp.dtype(dtype).name}


def export_stablehlo(output: str, generator) -> dict:
  """Writes `OUT/sampler.stablehlo` + `OUT/sampler.json` for `generator` (a loaded
  `videogen.sampling.generator.Generator`) at its training clip shape; returns the signature."""
  mesh = mesh_lib.create_mesh(generator.config.mesh, jax.devices()[:1])
  shape = generator.sample_shape(1)
  options = generator.options(shape)
  (b,) = jax.export.symbolic_shape("b")
  sampler = _compiled_sampler(generator.config, generator.model, mesh, (b, *shape[1:]), options)
  params = checkpoints.on_host(generator.params)

  def run(text, text_mask, text_drop, null_text, null_mask, null_drop, key):
    return sampler(params, (text, text_mask, text_drop), (null_text, null_mask, null_drop), key,
                   None, None, None)

  example = [(np.shape(x)[1:], jnp.asarray(x).dtype)
             for x in generator.text.conditional([""])]  # (text, mask, drop) at batch 1
  args = [jax.ShapeDtypeStruct((b, *s), d) for s, d in example] * 2
  args.append(jax.ShapeDtypeStruct((2,), jnp.uint32))
  with jax.set_mesh(mesh):
    exported = jax.export.export(jax.jit(run))(*args)
  signature = {
      "inputs": [dict(name=n, **_spec(a.shape, a.dtype)) for n, a in zip(INPUTS, args)],
      "output": _spec(exported.out_avals[0].shape, exported.out_avals[0].dtype),
      "space": "pixels in [-1, 1]" if generator.vae is None else "VAE latents (normalised)",
      "key": "jax.random.PRNGKey(seed): uint32[2] = [0, seed]",
      "params": "baked in as constants",
      "options": {"steps": options.steps, "guidance": options.guidance,
                  "guidance_rescale": options.guidance_rescale, "sampler": options.sampler,
                  "shift": options.shift, "strength": options.strength},
  }
  if jax.process_index() == 0:
    folder = workdir_lib.path(output)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SAMPLER_FILE).write_bytes(bytes(exported.serialize()))
    workdir_lib.write_json(folder / SIGNATURE_FILE, signature)
  return signature


def is_sampler_export(directory: str | None) -> bool:
  return bool(directory) and (workdir_lib.path(directory) / SAMPLER_FILE).is_file()


def sample_export(directory: str, prompts: list[str], seed: int = 0,
                  negative_prompt: str = "") -> tuple[np.ndarray, object]:
  """uint8 `(N, T, H, W, 3)` videos from a stablehlo export (its steps, guidance, sampler and
  clip shape are baked in), and its config. Tokenising (and a frozen T5) run here, as
  `Generator` runs them; a latent model's VAE (`vae.checkpoint`) decodes."""
  # Not checkpoints.load_config: that tells exports by their params, which this has none of.
  saved = workdir_lib.read_json(workdir_lib.path(directory) / checkpoints.EXPORT_CONFIG_FILE)
  config = ml_collections.ConfigDict(checkpoints._with_new_keys(saved, base_config().to_dict()))
  mesh = mesh_lib.create_mesh(config.mesh, jax.devices()[:1])
  rules = mesh_lib.rules_from_config(config.mesh)
  text = TextConditioning.create(config, directory, mesh, rules, vocabulary=VOCABULARY)
  unknown = text.tokenizer.unknown([*prompts, negative_prompt])
  if unknown:
    print(unknown_words_warning(config, text.tokenizer, unknown), file=sys.stderr)
  exported = jax.export.deserialize(
      bytearray((workdir_lib.path(directory) / SAMPLER_FILE).read_bytes()))
  x = exported.call(*text.conditional(prompts),
                    *text.unconditional(len(prompts), negative_prompt),
                    jax.random.PRNGKey(seed))
  if config.vae.checkpoint:
    with jax.set_mesh(mesh):
      x = FrozenVae.load(config.vae.checkpoint, mesh, rules).decode(x)
  return to_uint8(x), config
