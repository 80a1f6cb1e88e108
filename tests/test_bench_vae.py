"""The VAE benchmark on tiny settings: every row is there, and chunking keeps memory flat."""
import os

from conftest import REPO
from videogen.bench import vae as bench_vae
from videogen.config import load_config_file


def test_bench_vae_rows_and_flat_chunked_peak():
  config = load_config_file(os.path.join(REPO, "configs", "vae_tiny.py:test"))
  # 9 and 13 frames both hand caches between chunks (a 5-frame clip is one chunk, which
  # hands none on and so needs less).
  rows = bench_vae.run_benchmark(config, [9, 13], 16, 16, chunk_frames=4, chunk_latents=1,
                                 repeats=1)
  by_key = {(r["frames"], r["mode"]): r for r in rows}
  assert set(by_key) == {(n, m) for n in (9, 13) for m in bench_vae.MODES}
  for side in ("encode", "decode"):
    key = f"{side}_peak_mib"
    # One-shot memory grows with the clip; chunked memory does not.
    assert by_key[13, "one-shot"][key] > by_key[9, "one-shot"][key]
    chunked_9, chunked_13 = by_key[9, "chunked"][key], by_key[13, "chunked"][key]
    assert chunked_13 <= by_key[13, "one-shot"][key]
    assert abs(chunked_13 - chunked_9) <= 0.1 * chunked_9
  table = bench_vae.format_table(rows)
  assert table.count("| chunked |") == 2 and "n/a" not in table


def test_vs_pytorch_builds_the_same_widths_and_names_the_ratios():
  """--vs-pytorch compares like with like: diffusers' VAE from our config has our param count."""
  import pytest
  pytest.importorskip("diffusers")
  from diffusers import AutoencoderKLCogVideoX
  import jax
  config = load_config_file(os.path.join(REPO, "configs", "vae_tiny.py:test"))
  theirs = AutoencoderKLCogVideoX(**bench_vae.diffusers_kwargs(config.vae))
  _, params = bench_vae.build(config)
  assert (sum(p.numel() for p in theirs.parameters())
          == sum(x.size for x in jax.tree.leaves(params)))
  ours = {"frames": 17, "encode_fps": 3.0, "decode_fps": 1.0, "both_fps": 0.75,
          "peak_rss_mib": 900.0}
  theirs_row = {"frames": 17, "encode_fps": 2.0, "decode_fps": 0.5, "both_fps": 0.4,
                "peak_rss_mib": 1000.0}
  ratio = bench_vae.vs_ratios(ours, theirs_row)
  assert ratio["encode_fps"] == 1.5 and ratio["decode_fps"] == 2.0
  assert ratio["peak_rss_mib"] == 0.9
  config.vae.variant = "factorized"
  with pytest.raises(ValueError, match="causal3d"):
    bench_vae.diffusers_kwargs(config.vae)
