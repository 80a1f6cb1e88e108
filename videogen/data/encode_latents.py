"""The `latents` source's writer: clips of the configured source through a trained VAE into
ArrayRecord shards (data/latent_records.py), for `python -m videogen.encode_dataset`."""
import os

import numpy as np

from videogen.data import pipeline
from videogen.parallel import mesh as mesh_lib
from videogen.records import write_info, write_shard
from videogen.vae.latents import FrozenVae


def encode_dataset(config, output: str, num_clips: int, batch_size: int = 8,
                   records_per_shard: int = 4096) -> None:
  """Encodes clips 0..num_clips-1 of `config.data` with the VAE at `config.vae.checkpoint`
  into ArrayRecord shards of {latent_moments, caption} under `output` (captions after
  recaptioning; the reader turns them into the run's text features)."""
  mesh = mesh_lib.create_mesh(config.mesh)
  vae = FrozenVae.load(config.vae.checkpoint, mesh, mesh_lib.rules_from_config(config.mesh))
  examples = pipeline.SyntheticExamples(pipeline.world_from_config(config.data), config.data.seed,
                                        recaptioner=pipeline.recaptioner_from_config(config))
  os.makedirs(output)
  num_shards = -(-num_clips // records_per_shard)
  for shard in range(num_shards):
    records = []
    for start in range(shard * records_per_shard,
                       min(num_clips, (shard + 1) * records_per_shard), batch_size):
      indices = np.arange(start, min(start + batch_size, num_clips,
                                     (shard + 1) * records_per_shard))
      batch = examples(indices)
      moments = vae.encode_moments(batch["video"])
      records += [{"latent_moments": moments[i], "caption": batch["caption"][i]}
                  for i in range(len(indices))]
    write_shard(
        os.path.join(output, f"latents-{shard:05d}-of-{num_shards:05d}.array_record"), records)
  write_info(output, {
      "num_records": num_clips, "vae_checkpoint": config.vae.checkpoint,
      "clip_shape": [config.data.num_frames, config.data.height, config.data.width],
      "moments_shape": list(moments.shape[1:])})
