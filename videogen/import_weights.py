"""Import released weights into a videogen export directory.

    python -m videogen.import_weights --kind cogvideox_vae --input PATH --output OUT

`PATH` is a diffusers model folder (config.json + safetensors or a sharded index), a
pipeline folder with a `vae/` subfolder, or a weights file beside its config.json. `OUT`
is an export like `videogen.export` writes (params, config.json, metadata.json), so it can
be named as a DiT's `vae.checkpoint`. Weights are read as data (safetensors, or torch files
with `weights_only=True`); nothing is unpickled.
"""
import os
import sys

from absl import flags

from videogen.config import exit_with_error, parse_flags_or_exit

KINDS = ("cogvideox_vae",)
_KIND = flags.DEFINE_enum("kind", "cogvideox_vae", KINDS, "What the weights are.")
_INPUT = flags.DEFINE_string("input", None, "Weights folder or file.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Export directory (must not exist).",
                              required=True)


def import_cogvideox_vae(source: str, output: str) -> None:
  from videogen import checkpoints
  from videogen.config import base_config
  from videogen.vae import convert

  spec, params = convert.load_cogvideox_vae(source)
  diffusers_config = convert.load_diffusers_config(source)
  codec = spec.codecs[0]
  config = base_config()
  config.task = "vae"
  config.vae.update(
      variant="causal3d", latent_channels=codec.latent_channels,
      block_channels=codec.block_channels, layers_per_block=codec.layers_per_block,
      spatial_levels=codec.spatial_levels, temporal_levels=codec.temporal_levels,
      norm_groups=codec.norm_groups, norm_scope=codec.norm_scope,
      use_quant_conv=codec.use_quant_conv,
      # diffusers runs CogVideoX in chunks of 8 frames / 2 latents, each with its own
      # GroupNorm statistics: these sizes reproduce its latents and videos exactly.
      chunk_frames=8, chunk_latents=2)
  checkpoints.export_params(output, params, config, {
      "latent_stats": convert.latent_stats_from_diffusers_config(diffusers_config),
      "imported_from": os.path.abspath(source)})


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  if os.path.exists(_OUTPUT.value):
    exit_with_error(f"--output {_OUTPUT.value!r} already exists; choose a new directory")
  try:
    import_cogvideox_vae(_INPUT.value, _OUTPUT.value)
  except (FileNotFoundError, ValueError) as e:
    exit_with_error(str(e).splitlines()[0])
  print(_OUTPUT.value)


if __name__ == "__main__":
  main(sys.argv)
