"""What the export formats write, flag-free (the `videogen.export` CLI owns the flags; a
second module defining the same absl flags in one process would clash): diffusers layouts
and a LoRA adapter alone. Orbax and safetensors writers live in `checkpoints.py`, the
StableHLO sampler in `serving.py`.
"""
import jax
import numpy as np
import orbax.checkpoint as ocp

from videogen import checkpoints
from videogen import workdir as workdir_lib
from videogen.cli import load_generator_or_exit
from videogen.models import lora
from videogen.formats.diffusers_dit import diffusers_config, to_state_dict
from videogen.models.text_to_video import build_model, param_shardings, spec_from_config
from videogen.parallel import mesh as mesh_lib
from videogen.text.conditioning import t5_spec
from videogen.vae.latents import FrozenVae
from videogen.formats.weight_files import safetensors_spans, write_safetensors

DIFFUSERS_SUBDIR = "transformer"  # diffusers' pipeline folder for the denoiser


def dit_params(path: str, config):
  """The EMA params of a DiT that reads T5 states, without the text path (an imported
  export may carry neither tokenizer nor T5 weights; only the T5's width matters here)."""
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = mesh_lib.rules_from_config(config.mesh)
  model = build_model(config, 0, stored_text_width(path) or t5_spec(config.text, 0).d_model)
  latent_shape = None
  if config.vae.checkpoint:
    latent_shape = FrozenVae.load(config.vae.checkpoint, mesh, rules).latent_shape(
        config.data.num_frames, config.data.height, config.data.width)
  abstract, shardings = param_shardings(model, config, mesh, rules, latent_shape)
  with jax.set_mesh(mesh):
    return checkpoints.load_ema_params(path, abstract, shardings)


def stored_text_width(path: str) -> int | None:
  """The T5 width an export's DiT was saved with (its `context_proj` fan-in), read from the
  Orbax metadata or the safetensors header; None for a workdir."""
  orbax_params = workdir_lib.path(path) / checkpoints.EXPORT_PARAMS_SUBDIR
  tensors = workdir_lib.path(path) / checkpoints.EXPORT_SAFETENSORS_FILE
  if orbax_params.is_dir():
    with ocp.StandardCheckpointer() as checkpointer:
      tree = checkpointer.metadata(orbax_params).item_metadata.tree
    return tree["dit"]["context_proj"]["kernel"].shape[0]
  if tensors.is_file():
    with tensors.open("rb") as f:  # the header alone, checked: a malformed file is one line
      shapes = {key: shape for _, _, key, _, shape in safetensors_spans(f, str(tensors))[1]}
    shape = shapes.get("dit/context_proj/kernel")
    return shape[0] if shape else None  # None: the params check names what is missing
  return None


def export_diffusers(output: str, params, config, dtype: str = "float32") -> None:
  """`output/transformer/` as diffusers lays a transformer out: `config.json` plus
  `diffusion_pytorch_model.safetensors` (a DiT with a diffusers counterpart; see
  `diffusers_dit.diffusers_config`, which raises a ValueError naming what has none)."""
  kind, transformer_config = diffusers_config(config.model.to_dict(), config.text.max_length,
                                              config.diffusion.get("prediction", "velocity"))
  if set(params) != {"dit"}:
    raise ValueError(f"params {sorted(set(params) - {'dit'})} have no diffusers counterpart")
  dit = checkpoints.on_host(params["dit"])
  state = to_state_dict(dit, config.model.to_dict(), kind)
  to = np.dtype(jax.numpy.dtype(dtype))
  if jax.process_index() == 0:
    folder = workdir_lib.path(output) / DIFFUSERS_SUBDIR
    folder.mkdir(parents=True)
    with workdir_lib.local_target(folder / "diffusion_pytorch_model.safetensors") as local:
      write_safetensors(local, {k: v.astype(to) for k, v in state.items()}, {"format": "pt"})
    workdir_lib.write_json(folder / "config.json", transformer_config)


def export_adapter(workdir: str, output: str) -> None:
  """The LoRA adapters of the EMA params of `workdir`'s latest checkpoint, alone."""
  generator = load_generator_or_exit(workdir)
  _, adapter = lora.split_adapter(generator.params)
  checkpoints.save_adapter(output, adapter,
                           lora.adapter_meta(spec_from_config(generator.config.model)))
