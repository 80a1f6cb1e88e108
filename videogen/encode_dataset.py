"""Pre-encode a dataset with a trained VAE, so latent-space DiT training skips the encoder.

    python -m videogen.encode_dataset --config configs/x.py --output DIR [--num_clips N]
    python -m videogen.train --config configs/x.py --workdir RUN \\
        --config.data.source=latents --config.data.latents_path=DIR

`--config` is the DiT config: its `vae.checkpoint` names the VAE, its `data` section the
source clips (clip i becomes record i). Records hold the posterior moments, so training can
still sample the posterior: the result equals encoding inside the train step.
"""
import os
import sys

from absl import flags
from ml_collections import config_flags

from videogen.cli import exit_with_error, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_CONFIG = config_flags.DEFINE_config_file("config", None, "DiT config (names the VAE).",
                                          lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "Output directory (must not exist).")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", None,
                                  "Clips to encode (default: data.synthetic.num_clips).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips per encoder call.")
_RECORDS_PER_SHARD = flags.DEFINE_integer("records_per_shard", 4096, "Records per file.")
flags.mark_flags_as_required(["config", "output"])


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv)
  config = _CONFIG.value
  if not config.vae.checkpoint:
    exit_with_error("--config must name a VAE: set vae.checkpoint")
  if config.data.source != "synthetic":
    exit_with_error(f"encode_dataset reads data.source='synthetic'; got {config.data.source!r}")
  if os.path.exists(_OUTPUT.value):
    exit_with_error(f"--output {_OUTPUT.value!r} already exists; choose a new directory")
  from videogen import checkpoints
  from videogen.data import encode_latents  # jax: after the flags are parsed
  try:
    encode_latents.encode_dataset(
        config, _OUTPUT.value, _NUM_CLIPS.value or config.data.synthetic.num_clips,
        _BATCH.value, _RECORDS_PER_SHARD.value)
  except (checkpoints.CheckpointNotFoundError, ValueError) as e:
    exit_with_error(str(e))
  print(_OUTPUT.value)


if __name__ == "__main__":
  main(sys.argv)
