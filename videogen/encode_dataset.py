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

from videogen.config import exit_with_error, parse_flags_or_exit

_CONFIG = config_flags.DEFINE_config_file("config", None, "DiT config (names the VAE).",
                                          lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "Output directory (must not exist).")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", None,
                                  "Clips to encode (default: data.synthetic.num_clips).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips per encoder call.")
_RECORDS_PER_SHARD = flags.DEFINE_integer("records_per_shard", 4096, "Records per file.")
flags.mark_flags_as_required(["config", "output"])


def encode_dataset(config, output: str, num_clips: int, batch_size: int = 8,
                   records_per_shard: int = 4096) -> None:
  import numpy as np
  from videogen.data import latent_records, pipeline
  from videogen.parallel import mesh as mesh_lib
  from videogen.vae import chunked
  from videogen.vae.latents import FrozenVae

  mesh = mesh_lib.create_mesh(config.mesh)
  vae = FrozenVae.load(config.vae.checkpoint, mesh, mesh_lib.rules_from_config(config.mesh))
  examples = pipeline.SyntheticExamples(pipeline.world_from_config(config.data), config.data.seed,
                                        pipeline.tokenizer_from_config(config))
  os.makedirs(output)
  num_shards = -(-num_clips // records_per_shard)
  for shard in range(num_shards):
    records = []
    for start in range(shard * records_per_shard,
                       min(num_clips, (shard + 1) * records_per_shard), batch_size):
      indices = np.arange(start, min(start + batch_size, num_clips,
                                     (shard + 1) * records_per_shard))
      batch = examples(indices)
      moments = chunked.encode(vae.model, vae.params, batch["video"], config.vae.chunk_frames,
                               on_host=True)
      records += [{"latent_moments": moments[i], "tokens": batch["tokens"][i],
                   "token_mask": batch["token_mask"][i]} for i in range(len(indices))]
    latent_records.write_shard(
        os.path.join(output, f"latents-{shard:05d}-of-{num_shards:05d}.array_record"), records)
  latent_records.write_info(output, {
      "num_records": num_clips, "vae_checkpoint": config.vae.checkpoint,
      "clip_shape": [config.data.num_frames, config.data.height, config.data.width],
      "moments_shape": list(moments.shape[1:])})


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
  try:
    encode_dataset(config, _OUTPUT.value, _NUM_CLIPS.value or config.data.synthetic.num_clips,
                   _BATCH.value, _RECORDS_PER_SHARD.value)
  except (checkpoints.CheckpointNotFoundError, ValueError) as e:
    exit_with_error(str(e))
  print(_OUTPUT.value)


if __name__ == "__main__":
  main(sys.argv)
