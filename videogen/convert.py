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

# What each transformer was trained with: clip shape, prompt length, objective. CogVideoX's
# scaled-linear zero-SNR schedule is not implemented: its export samples as v-prediction on
# our linear DDPM schedule (an approximation; noted in metadata.json).
TRANSFORMER_DEFAULTS = {
    "cogvideox": dict(frames=49, height=480, width=720, max_length=226,
                      diffusion=dict(objective="v", schedule="linear")),
    "wan": dict(frames=81, height=480, width=832, max_length=512,
                diffusion=dict(objective="flow", shift=3.0)),
}


def _find_tokenizer(text_encoder: str) -> str:
  """spiece.model beside the encoder weights, or in a diffusers pipeline's `tokenizer/`."""
  text_encoder = text_encoder.rstrip("/")
  for path in (os.path.join(text_encoder, "spiece.model"),
               os.path.join(os.path.dirname(text_encoder), "tokenizer", "spiece.model")):
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"no spiece.model in {text_encoder} or its sibling tokenizer/")


def export_transformer(kind: str, source: str, output: str, vae: str = "",
                       text_encoder: str = "") -> None:
  from videogen import checkpoints
  from videogen.config import base_config
  from videogen.formats.diffusers_dit import load_diffusers_dit, stack_blocks
  settings, params = load_diffusers_dit(source, kind)
  defaults = TRANSFORMER_DEFAULTS[kind]
  config = base_config()
  config.model.update(**settings, dtype="bfloat16")
  config.data.update(num_frames=defaults["frames"], height=defaults["height"],
                     width=defaults["width"])
  config.diffusion.update(**defaults["diffusion"])
  config.vae.checkpoint = os.path.abspath(vae) if vae else ""
  tokenizer = _find_tokenizer(text_encoder) if text_encoder else ""
  config.text.update(max_length=defaults["max_length"], tokenizer="sentencepiece",
                     tokenizer_path=os.path.abspath(tokenizer) if tokenizer else "",
                     encoder="t5", null="empty", t5=dict(
                         checkpoint=os.path.abspath(text_encoder) if text_encoder else "",
                         preset="tiny", seed=0, dtype="bfloat16"))
  checkpoints.export_params(output, {"dit": stack_blocks(params, settings["depth"])}, config, {
      "imported_from": os.path.abspath(source), "kind": f"diffusers-{kind}",
      "schedule_note": "" if kind == "wan" else "CogVideoX's scaled-linear zero-SNR schedule "
      "is approximated by the linear DDPM schedule"})


def main(argv: list[str]) -> None:
  positional = parse_flags_or_exit(argv, config_flag=None)
  if len(positional) != 2:
    exit_with_error("give exactly one SRC: python -m videogen.convert --from KIND SRC --to OUT")
  source, output = positional[1], _TO.value
  if os.path.exists(output):
    exit_with_error(f"--to {output!r} already exists; choose a new directory")
  try:
    if _FROM.value == "pytorch-i3d":
      from videogen.eval.i3d import convert_file
      convert_file(source, output)
    elif _FROM.value == "diffusers-cogvideox-vae":
      from videogen.vae.convert import export_cogvideox_vae
      export_cogvideox_vae(source, output)
    else:
      export_transformer(_FROM.value.removeprefix("diffusers-"), source, output, _VAE.value,
                         _TEXT.value)
  except (FileNotFoundError, ValueError) as e:
    exit_with_error(str(e).splitlines()[0])
  print(output)


if __name__ == "__main__":
  main(sys.argv)
