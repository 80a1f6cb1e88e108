"""Import released diffusers weights into a videogen export directory.

    python -m videogen.convert --from diffusers-cogvideox SRC --to OUT [--vae VAE_EXPORT] \\
        [--text_encoder T5_FOLDER]
    python -m videogen.convert --from diffusers-wan SRC --to OUT
    python -m videogen.convert --from diffusers-cogvideox-vae SRC --to OUT
    python -m videogen.convert --from pytorch-i3d rgb_imagenet.pt --to i3d.safetensors

`SRC` is a diffusers model folder (config.json + safetensors, a sharded index, or a torch
.bin read with `weights_only=True`), a pipeline folder with `transformer/` or `vae/`, or a
weights file beside its config.json. `OUT` is an export like `videogen.export` writes
(params, config.json, metadata.json): a transformer export samples with
`videogen.sample --checkpoint OUT` once `--vae` names its VAE (an export of
`diffusers-cogvideox-vae`) and `--text_encoder` its T5 folder (with spiece.model); a VAE
export can be named as any DiT's `vae.checkpoint`. `pytorch-i3d` turns piergiaj's Kinetics-400
I3D state dict (or an FVD copy of it) into the safetensors file `evaluate --i3d_weights` reads.
"""
import os
import sys

from absl import flags

from videogen.cli import exit_with_error, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

SOURCES = ("diffusers-cogvideox", "diffusers-wan", "diffusers-cogvideox-vae", "pytorch-i3d")
_FROM = flags.DEFINE_enum("from", None, SOURCES, "What SRC holds.")
_TO = flags.DEFINE_string("to", None, "Export directory or, for pytorch-i3d, a .safetensors "
                          "file (must not exist).")
_VAE = flags.DEFINE_string("vae", "", "Transformers: the VAE export their latents belong to.")
_TEXT = flags.DEFINE_string("text_encoder", "",
                            "Transformers: HF T5/UMT5 folder (with spiece.model) for prompts.")
flags.mark_flags_as_required(["from", "to"])

def main(argv: list[str]) -> None:
  positional = parse_flags_or_exit(argv, config_flag=None)
  if len(positional) != 2:
    exit_with_error("give exactly one SRC: python -m videogen.convert --from KIND SRC --to OUT")
  source, output = positional[1], _TO.value
  if os.path.exists(output):
    exit_with_error(f"--to {output!r} already exists; choose a new directory")
  try:
    if _FROM.value == "pytorch-i3d":
      from videogen.formats.i3d import import_i3d
      import_i3d(source, output)
    elif _FROM.value == "diffusers-cogvideox-vae":
      from videogen.formats.cogvideox_vae import import_cogvideox_vae
      import_cogvideox_vae(source, output)
    else:
      from videogen.formats.diffusers_dit import import_diffusers_dit
      import_diffusers_dit(_FROM.value.removeprefix("diffusers-"), source, output, _VAE.value,
                           _TEXT.value)
  except (FileNotFoundError, ValueError) as e:
    exit_with_error(str(e).splitlines()[0])
  print(output)


if __name__ == "__main__":
  main(sys.argv)
