"""Export a training run's EMA params (no optimizer state) plus its config and metadata.
Works for DiT and VAE runs (a VAE export carries its latent statistics).

    python -m videogen.export --workdir DIR --output OUT
    python -m videogen.sample --checkpoint OUT --prompt ... --output video.mp4

`--adapter_only` (a run with `model.lora_rank > 0`) writes just its LoRA adapters (EMA) as
`adapter.safetensors` + `adapter.json` (videogen/models/lora.py), for any copy of the base.
"""
import os
import shutil
import sys

from absl import flags

from videogen.config import exit_with_error, parse_flags_or_exit

_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory to export from.",
                               required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Export directory (must not exist).", required=True)
_ADAPTER_ONLY = flags.DEFINE_bool("adapter_only", False,
                                  "Write only the run's LoRA adapters (model.lora_rank > 0).")


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  if os.path.exists(_OUTPUT.value):
    exit_with_error(f"--output {_OUTPUT.value!r} already exists; choose a new directory")
  from videogen import checkpoints
  try:
    config = checkpoints.load_config(_WORKDIR.value)
  except checkpoints.CheckpointNotFoundError as e:
    exit_with_error(str(e))
  task = config.get("task", "dit")
  if _ADAPTER_ONLY.value:
    if task != "dit" or not config.model.get("lora_rank", 0):
      exit_with_error(f"--adapter_only: {_WORKDIR.value!r} has no LoRA adapters "
                      f"(model.lora_rank is 0); export without the flag")
    export_adapter(_WORKDIR.value, _OUTPUT.value)
  elif task == "vae":
    from videogen.parallel import mesh as mesh_lib
    from videogen.vae.latents import FrozenVae
    vae = FrozenVae.load(_WORKDIR.value, mesh_lib.create_mesh(config.mesh),
                         mesh_lib.rules_from_config(config.mesh))
    checkpoints.export_params(_OUTPUT.value, vae.params, vae.config, {"latent_stats": vae.stats})
  else:
    from videogen.generate import load_or_exit
    generator = load_or_exit(_WORKDIR.value)
    checkpoints.export_params(_OUTPUT.value, generator.params, generator.config)
    from videogen.text.conditioning import run_files
    for name in run_files(generator.config):  # e.g. a tokenizer trained in the workdir
      shutil.copy(os.path.join(_WORKDIR.value, name), os.path.join(_OUTPUT.value, name))
  print(_OUTPUT.value)


def export_adapter(workdir: str, output: str) -> None:
  """The LoRA adapters of the EMA params of `workdir`'s latest checkpoint, alone."""
  from videogen.generate import load_or_exit
  from videogen.models import lora
  from videogen.models.text_to_video import spec_from_config
  generator = load_or_exit(workdir)
  _, adapter = lora.split_adapter(generator.params)
  lora.save_adapter(output, adapter, lora.adapter_meta(spec_from_config(generator.config.model)))


if __name__ == "__main__":
  main(sys.argv)
