"""The VAE benchmark on tiny settings: every row is there, and chunking keeps memory flat."""
import os

from conftest import REPO
from videogen import bench_vae
from videogen.config import load_config_file


def test_bench_vae_rows_and_flat_chunked_peak():
  config = load_config_file(os.path.join(REPO, "configs", "vae_tiny.py:test"))
  rows = bench_vae.run_benchmark(config, [5, 9], 16, 16, chunk_frames=4, chunk_latents=1,
                                 repeats=1)
  by_key = {(r["frames"], r["mode"]): r for r in rows}
  assert set(by_key) == {(n, m) for n in (5, 9) for m in bench_vae.MODES}
  for side in ("encode", "decode"):
    key = f"{side}_peak_mib"
    # One-shot memory grows with the clip; chunked memory does not.
    assert by_key[9, "one-shot"][key] > by_key[5, "one-shot"][key]
    chunked_5, chunked_9 = by_key[5, "chunked"][key], by_key[9, "chunked"][key]
    assert chunked_9 <= by_key[9, "one-shot"][key]
    assert abs(chunked_9 - chunked_5) <= 0.1 * chunked_5
  table = bench_vae.format_table(rows)
  assert table.count("| chunked |") == 2 and "n/a" not in table
