"""Export a training run's EMA params (no optimizer state) plus its config and metadata.
Works for DiT and VAE runs (a VAE export carries its latent statistics). `--workdir` may also
be an export (to convert between formats).

    python -m videogen.export --workdir DIR --output OUT [--format FORMAT]
    python -m videogen.sample --checkpoint OUT --prompt ... --output video.mp4

`--format`:
  orbax        (default) `params/` (Orbax, sharded; restores onto any mesh) + config.json +
               metadata.json (+ run files such as a trained spiece.model)
  safetensors  `model.safetensors` (leaves named by `/`-joined paths, `--dtype` float32 or
               bfloat16) + the same JSON and run files; samples like an Orbax export
  diffusers    `transformer/diffusion_pytorch_model.safetensors` + `transformer/config.json`:
               layout expert → CogVideoXTransformer3DModel, joint → WanTransformer3DModel
               (videogen/formats/diffusers_dit.py); other models are refused by name
  stablehlo    `sampler.stablehlo` + `sampler.json`: the whole sampler via `jax.export`
               (videogen/formats/stablehlo.py) + config.json

`--adapter_only` (a run with `model.lora_rank > 0`) writes just its LoRA adapters (EMA) as
`adapter.safetensors` + `adapter.json` (videogen/formats/lora_adapter.py), for any copy of
the base.
"""
import sys

from absl import flags

from videogen.cli import exit_with_error, load_generator_or_exit, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory to export from.",
                               required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Export directory (must not exist).", required=True)
_ADAPTER_ONLY = flags.DEFINE_bool("adapter_only", False,
                                  "Write only the run's LoRA adapters (model.lora_rank > 0).")
FORMATS = ("orbax", "safetensors", "diffusers", "stablehlo")
_FORMAT = flags.DEFINE_enum("format", "orbax", FORMATS, "What to write (see the module doc).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ("float32", "bfloat16"),
                           "Tensor dtype of --format safetensors or diffusers.")


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  from videogen.parallel.distributed import initialize_from_env
  initialize_from_env()  # an export from every process of a multi-host job
  from videogen import workdir as workdir_lib
  if workdir_lib.path(_OUTPUT.value).exists():
    exit_with_error(f"--output {_OUTPUT.value!r} already exists; choose a new directory")
  from videogen import checkpoints
  try:
    config = checkpoints.load_config(_WORKDIR.value)
  except checkpoints.CheckpointNotFoundError as e:
    exit_with_error(str(e))
  task, fmt, workdir, output = config.get("task", "dit"), _FORMAT.value, _WORKDIR.value, \
      _OUTPUT.value
  if _DTYPE.value != "float32" and fmt not in ("safetensors", "diffusers"):
    exit_with_error(f"--dtype applies to --format safetensors or diffusers, not {fmt}")
  if _ADAPTER_ONLY.value:
    if task != "dit" or not config.model.get("lora_rank", 0):
      exit_with_error(f"--adapter_only: {workdir!r} has no LoRA adapters "
                      f"(model.lora_rank is 0); export without the flag")
    if _FORMAT.present:
      exit_with_error("--adapter_only always writes safetensors adapters; drop --format")
    from videogen.formats.lora_adapter import export_lora_adapter
    export_lora_adapter(workdir, output)
  elif task == "vae":
    if fmt not in ("orbax", "safetensors"):
      exit_with_error(f"--format {fmt}: a VAE exports as orbax or safetensors only")
    from videogen.parallel import mesh as mesh_lib
    from videogen.vae.latents import FrozenVae
    vae = FrozenVae.load(workdir, mesh_lib.create_mesh(config.mesh),
                         mesh_lib.rules_from_config(config.mesh))
    _write_params(fmt, output, vae.params, vae.config, {"latent_stats": vae.stats})
  elif fmt == "diffusers":
    from videogen.formats.diffusers_dit import diffusers_config
    problems = []  # refuse before loading anything, naming every setting at once
    if config.text.encoder != "t5":
      problems.append(f"text.encoder={config.text.encoder!r} (needs 't5': the DiT's own "
                      "caption embedding has no diffusers counterpart)")
    if config.text.null == "learned":
      problems.append("text.null='learned' (needs 'empty' or 'zero')")
    try:
      diffusers_config(config.model.to_dict(), config.text.max_length)
    except ValueError as e:
      problems.append(str(e))
    if problems:
      exit_with_error(f"--format diffusers: {'; '.join(problems)} (configs/tiny.py:wan "
                      "trains a model that exports)")
    try:
      from videogen.formats.diffusers_dit import dit_params, export_diffusers_dit
      export_diffusers_dit(output, dit_params(workdir, config), config, _DTYPE.value)
    except (FileNotFoundError, ValueError) as e:
      exit_with_error(f"--format diffusers: {str(e).splitlines()[0]}")
  else:
    generator = load_generator_or_exit(workdir)
    metadata = checkpoints.load_metadata(workdir)  # e.g. what `convert` noted
    if fmt == "stablehlo":
      from videogen.formats.stablehlo import export_stablehlo
      export_stablehlo(output, generator)
      checkpoints.write_export_json(output, generator.config, metadata)
    else:
      _write_params(fmt, output, generator.params, generator.config, metadata)
    from videogen.text.conditioning import run_files
    for name in run_files(generator.config):  # e.g. a tokenizer trained in the workdir
      workdir_lib.run_file(workdir, name).copy(workdir_lib.run_file(output, name), overwrite=True)
  print(output)


def _write_params(fmt: str, output: str, params, config, metadata=None) -> None:
  from videogen import checkpoints
  if fmt == "safetensors":
    checkpoints.export_safetensors(output, params, config, metadata, _DTYPE.value)
  else:
    checkpoints.export_params(output, params, config, metadata)


if __name__ == "__main__":
  main(sys.argv)
