"""VAE benchmark: encode/decode throughput and peak device memory against clip length, one-shot
vs temporally chunked.

    python -m videogen.bench_vae [--config configs/vae_tiny.py] [--frames 17,33,65,129] \\
        [--height 64 --width 64] [--chunk_frames 16] [--chunk_latents 4] [--output r.json]

Chunking exists so that device memory does not grow with clip length: this measures that
claim (the chunked peak must stay flat as clips get longer) and what it costs in throughput.

Peak memory is XLA's compiled memory analysis of the program that runs (arguments + outputs +
temporaries): CPU JAX keeps no live memory statistics, and the analysis is the same figure on
every backend. For chunked runs it is the largest of the distinct per-chunk programs. Chunked
runs read each chunk from host memory and stream its output back to the host (`on_host=True`),
so their device peak excludes the full input and output arrays (those must exist somewhere
whatever the method; they live in host memory); one-shot holds both on the device.

Params are a random init (batch 1): throughput and memory do not depend on the weights.
Frames/s counts video frames (decode: the frames the latents decode to); each figure is the best
of `--repeats` timed calls after a warm-up, since the machine may be shared.
"""
import functools
import json
import sys
import time

from absl import flags

from videogen.cli import exit_with_error, parse_flags_or_exit
from videogen.config import load_config_file
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_CONFIG = flags.DEFINE_string("config", "configs/vae_tiny.py", "VAE config file[:variant].")
_FRAMES = flags.DEFINE_list("frames", ["17", "33", "65", "129"], "Clip lengths (1 + 4k).")
_HEIGHT = flags.DEFINE_integer("height", 64, "Frame height.")
_WIDTH = flags.DEFINE_integer("width", 64, "Frame width.")
_CHUNK_FRAMES = flags.DEFINE_integer("chunk_frames", 16, "Encode chunk (video frames).")
_CHUNK_LATENTS = flags.DEFINE_integer("chunk_latents", 4, "Decode chunk (latent frames).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed calls per figure (after one warm-up).")
_OUTPUT = flags.DEFINE_string("output", None, "Optional path for the results as JSON.")

MIB = 2 ** 20
MODES = ("one-shot", "chunked")


def build(config):
  """The config's VAE and a random init of its params (unboxed)."""
  import flax.linen as nn
  import jax
  from videogen.vae.latents import init_params
  from videogen.vae.model import Autoencoder, spec_from_config
  model = Autoencoder(spec_from_config(config.vae))
  params = jax.jit(functools.partial(init_params, model))(jax.random.PRNGKey(0))
  return model, nn.meta.unbox(params)


def program_bytes(compiled) -> int | None:
  """Device bytes a compiled program needs (None where the backend gives no analysis)."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
          - stats.alias_size_in_bytes)


def peak_bytes(model, method: str, params, shape: tuple[int, ...], chunk: int | None):
  """Peak over the distinct programs that run `method` on an input of `shape` in temporal
  chunks of `chunk` (None: one pass, i.e. the first-chunk program over the whole clip).

  Compiling here costs nothing extra: jit reuses the executable for the timed calls."""
  import jax
  import jax.numpy as jnp
  from videogen.vae.chunked import _chunk_program, batches_like_diffusers, chunk_bounds
  lengths = {(start == 0, stop - start) for start, stop in chunk_bounds(
      shape[1], chunk or shape[1], batches_like_diffusers(model, method))}
  first_len = next(n for first, n in lengths if first)
  struct = lambda n: jax.ShapeDtypeStruct((shape[0], n, *shape[2:]), jnp.float32)
  # Every later chunk gets the cache the first one leaves (its shape does not change).
  _, cache = jax.eval_shape(_chunk_program(model, method, True), params, {}, struct(first_len))
  sizes = [program_bytes(_chunk_program(model, method, first).lower(
      params, {} if first else cache, struct(n)).compile()) for first, n in sorted(lengths)]
  return None if None in sizes else max(sizes)


def best_seconds(fn, repeats: int) -> float:
  """Best of `repeats` timed calls after one warm-up (which also compiles)."""
  import jax
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def bench_clip(model, params, frames: int, height: int, width: int, chunk_frames: int,
               chunk_latents: int, repeats: int) -> list[dict]:
  """One row per mode for a random clip of `frames` frames."""
  import jax.numpy as jnp
  import numpy as np
  from videogen.vae import chunked
  channels = model.spec.codecs[0].in_channels
  video = np.random.default_rng(frames).uniform(
      -1, 1, (1, frames, height, width, channels)).astype(np.float32)
  latents = np.asarray(chunked.encode(model, params, video, chunk_frames, on_host=True)
                       )[..., :model.spec.latent_channels]
  on_device = {"video": jnp.asarray(video), "latents": jnp.asarray(latents)}
  runs = {
      "one-shot": (lambda: chunked.encode(model, params, on_device["video"]),
                   lambda: chunked.decode(model, params, on_device["latents"])),
      "chunked": (lambda: chunked.encode(model, params, video, chunk_frames, on_host=True),
                  lambda: chunked.decode(model, params, latents, chunk_latents, on_host=True)),
  }
  rows = []
  for mode in MODES:
    encode, decode = runs[mode]
    one_shot = mode == "one-shot"
    enc_peak = peak_bytes(model, "encode_moments", params, video.shape,
                          None if one_shot else chunk_frames)
    dec_peak = peak_bytes(model, "decode", params, latents.shape,
                          None if one_shot else chunk_latents)
    rows.append({
        "frames": frames, "mode": mode,
        "encode_fps": frames / best_seconds(encode, repeats),
        "decode_fps": frames / best_seconds(decode, repeats),
        "encode_peak_mib": None if enc_peak is None else enc_peak / MIB,
        "decode_peak_mib": None if dec_peak is None else dec_peak / MIB,
    })
  return rows


def run_benchmark(config, frames: list[int], height: int, width: int, chunk_frames: int,
                  chunk_latents: int, repeats: int) -> list[dict]:
  """Rows for every clip length and mode, with the config's VAE at random init."""
  from videogen.vae.model import check_video_shape
  model, params = build(config)
  for n in frames:
    check_video_shape(model.spec, n, height, width)
  return [row for n in frames for row in bench_clip(
      model, params, n, height, width, chunk_frames, chunk_latents, repeats)]


def peak_ratios(rows: list[dict]) -> dict[str, float | None]:
  """Per mode and codec side: peak at the longest clip / peak at the shortest (flat ≈ 1.0)."""
  ratios = {}
  for mode in MODES:
    mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["frames"])
    for side in ("encode", "decode"):
      lo, hi = mine[0][f"{side}_peak_mib"], mine[-1][f"{side}_peak_mib"]
      ratios[f"{mode} {side}"] = None if lo is None or hi is None else hi / lo
  return ratios


def _fmt(value, spec: str) -> str:
  return "n/a" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
  """A markdown table plus the longest/shortest peak ratios."""
  lines = ["| frames | mode | encode frames/s | decode frames/s | encode peak MiB "
           "| decode peak MiB |", "|---:|---|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['frames']} | {r['mode']} | {r['encode_fps']:.1f} | "
                 f"{r['decode_fps']:.1f} | {_fmt(r['encode_peak_mib'], '.1f')} | "
                 f"{_fmt(r['decode_peak_mib'], '.1f')} |")
  frames = sorted({r["frames"] for r in rows})
  ratios = peak_ratios(rows)
  lines.append("")
  for mode in MODES:
    lines.append(f"{mode} peak, {frames[-1]} vs {frames[0]} frames: encode "
                 f"{_fmt(ratios[f'{mode} encode'], '.2f')}x, decode "
                 f"{_fmt(ratios[f'{mode} decode'], '.2f')}x")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  try:
    frames = [int(n) for n in _FRAMES.value]
  except ValueError:
    exit_with_error(f"--frames: expected integers, got {','.join(_FRAMES.value)!r}")
  try:
    config = load_config_file(_CONFIG.value)
  except OSError as e:
    exit_with_error(f"--config: {e}")
  import jax
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"{_CONFIG.value} at {_HEIGHT.value}x{_WIDTH.value}, chunk_frames={_CHUNK_FRAMES.value}, "
        f"chunk_latents={_CHUNK_LATENTS.value}")
  try:
    rows = run_benchmark(config, frames, _HEIGHT.value, _WIDTH.value, _CHUNK_FRAMES.value,
                         _CHUNK_LATENTS.value, _REPEATS.value)
  except ValueError as e:  # a clip or chunk shape the VAE cannot take
    exit_with_error(str(e))
  print(format_table(rows))
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump({"config": _CONFIG.value, "height": _HEIGHT.value, "width": _WIDTH.value,
                 "chunk_frames": _CHUNK_FRAMES.value, "chunk_latents": _CHUNK_LATENTS.value,
                 "rows": rows, "peak_ratio_longest_vs_shortest": peak_ratios(rows)}, f, indent=2)


if __name__ == "__main__":
  main(sys.argv)
