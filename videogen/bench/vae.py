"""VAE benchmark: encode/decode throughput and peak device memory against clip length, one-shot
vs temporally chunked.

    python -m videogen.bench vae [--config configs/vae_tiny.py] [--frames 17,33,65,129] \\
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

Against PyTorch, side by side in one invocation:

    python -m videogen.bench vae --vs-pytorch [--frames 17,33] [--height 64 --width 64] \\
        [--config FILE] [--vs_mode chunked|one-shot] [--repeats 2]

runs our VAE (the `vae` section of `--config`; without it `base_config()`'s, the released
CogVideoX widths, 215.6 M params) and diffusers' `AutoencoderKLCogVideoX` built with the same
widths, each side in its own subprocess (so its peak RSS is its own), on the same random clip
shape: one warm-up, then `--repeats` timed encode and decode calls (best of). It prints one
JSON line per side and clip length, frames/s for encode, decode and both (frames over encode +
decode seconds) and the process's peak RSS (ours also XLA's memory analysis of the programs
that ran, measured after the RSS was read), then a ratio line (ours / theirs). Each side runs
its own library's long-clip path: ours `videogen.vae.chunked` with `--chunk_frames` /
`--chunk_latents` (`--vs_mode chunked`, the default) or one pass; diffusers its frame batching
(8 frames per encoder call, 2 latent frames per decoder call, with its conv cache).
"""
import functools
import json
import os
import sys
import time

from absl import flags

from videogen.cli import exit_with_error, parse_flags_or_exit
from videogen.config import load_config_file
from videogen.vae.cpu_scheduler import with_lean_scheduler
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
_VS_PYTORCH = flags.DEFINE_bool(
    "vs-pytorch", False, "Compare with diffusers' AutoencoderKLCogVideoX at the same widths "
    "(default config: base_config's vae section; default frames: 17).")
_VS_MODE = flags.DEFINE_enum("vs_mode", "chunked", ["chunked", "one-shot"],
                             "Our path in --vs-pytorch: chunked (--chunk_frames/--chunk_latents) "
                             "or one pass.")
_VS_SIDE = flags.DEFINE_enum("vs_side", None, ["videogen", "pytorch"],
                             "Internal: run one side of --vs-pytorch in this process.")

MIB = 2 ** 20
MODES = ("one-shot", "chunked")


def build(config):
  """The config's VAE and a random init of its params (unboxed), drawn leaf by leaf from the
  model's own initializers (conv kernels variance-scaled, biases 0, norm scales 1): `model.init`
  runs a forward pass and draws every leaf in one program, which holds ~1.3× the params again
  in temporaries (1.1 GB at the released widths) and would dominate the peak RSS measured
  here; a restored checkpoint needs neither."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from videogen.vae.latents import init_params
  from videogen.vae.model import Autoencoder, conv_kernel_init, spec_from_config
  model = Autoencoder(spec_from_config(config.vae))
  abstract = nn.meta.unbox(jax.eval_shape(functools.partial(init_params, model),
                                          jax.random.PRNGKey(0)))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
  kernel = jax.jit(conv_kernel_init(), static_argnums=1)
  values = []
  for (path, leaf), key in zip(leaves, keys):
    name = path[-1].key
    if name == "kernel":
      values.append(kernel(key, leaf.shape))
    else:  # biases start at 0, GroupNorm scales at 1
      values.append(jnp.full(leaf.shape, 1.0 if name == "scale" else 0.0, leaf.dtype))
  params = jax.block_until_ready(jax.tree_util.tree_unflatten(treedef, values))
  return_freed_heap()
  return model, params


def return_freed_heap() -> None:
  """Hands glibc's free heap pages back to the OS (elsewhere a no-op). Drawing the params
  leaf by leaf leaves ~100 MiB of freed compiler and RNG memory resident at the released
  widths, which a process restoring a checkpoint would not have."""
  import ctypes
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass


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
  lengths = {(start == 0, stop == shape[1], stop - start) for start, stop in chunk_bounds(
      shape[1], chunk or shape[1], batches_like_diffusers(model, method))}
  first_len = next(n for first, _, n in lengths if first)
  struct = lambda n: jax.ShapeDtypeStruct((shape[0], n, *shape[2:]), jnp.float32)
  # Every later chunk gets the cache the first one leaves (its shape does not change).
  _, cache = jax.eval_shape(_chunk_program(model, method, True), params, {}, struct(first_len))
  sizes = [program_bytes(_chunk_program(model, method, first, last).lower(
      params, {} if first else cache, struct(n)).compile())
      for first, last, n in sorted(lengths)]
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

# --- Side by side with diffusers' AutoencoderKLCogVideoX (--vs-pytorch) ---------------------


def peak_rss_mib() -> float:
  """This process's peak resident set size so far (Linux reports KiB)."""
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def diffusers_kwargs(vae) -> dict:
  """Our `vae` config section → `AutoencoderKLCogVideoX(**kwargs)` with the same widths."""
  levels = len(vae.block_channels) - 1
  if vae.variant != "causal3d" or vae.spatial_levels != levels:
    raise ValueError(f"--vs-pytorch needs vae.variant='causal3d' with spatial_levels = "
                     f"len(block_channels) - 1 = {levels} (diffusers' layout); got "
                     f"{vae.variant!r}, {vae.spatial_levels}")
  return dict(in_channels=3, out_channels=3, block_out_channels=tuple(vae.block_channels),
              latent_channels=vae.latent_channels, layers_per_block=vae.layers_per_block,
              norm_num_groups=vae.norm_groups,
              temporal_compression_ratio=2 ** vae.temporal_levels,
              use_quant_conv=vae.use_quant_conv, use_post_quant_conv=vae.use_quant_conv)


def _rates(frames: int, encode_s: float, decode_s: float) -> dict:
  return {"encode_s": encode_s, "decode_s": decode_s, "encode_fps": frames / encode_s,
          "decode_fps": frames / decode_s, "both_fps": frames / (encode_s + decode_s)}


def _best_wall(fn, repeats: int) -> float:
  fn()  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def pytorch_side(config, frames: int, height: int, width: int, repeats: int) -> dict:
  """diffusers' CogVideoX VAE (random init, eval, no grad) on a random clip: rates and RSS."""
  import numpy as np
  import torch
  from diffusers import AutoencoderKLCogVideoX
  torch.manual_seed(0)
  vae = AutoencoderKLCogVideoX(**diffusers_kwargs(config.vae)).eval()
  video = torch.from_numpy(np.random.default_rng(frames).uniform(
      -1, 1, (1, 3, frames, height, width)).astype(np.float32))
  with torch.inference_mode():
    latents = vae.encode(video).latent_dist.mean
    encode_s = _best_wall(lambda: vae.encode(video).latent_dist.mean, repeats)
    decode_s = _best_wall(lambda: vae.decode(latents).sample, repeats)
    decoded = vae.decode(latents).sample.shape[2]
  assert decoded == frames, (decoded, frames)
  return {"side": "pytorch", "params_M": sum(p.numel() for p in vae.parameters()) / 1e6,
          "frames": frames, "height": height, "width": width, "threads": torch.get_num_threads(),
          "path": f"frame batches of {vae.num_sample_frames_batch_size} / "
                  f"{vae.num_latent_frames_batch_size} latents",
          **_rates(frames, encode_s, decode_s), "peak_rss_mib": peak_rss_mib()}


def videogen_side(config, frames: int, height: int, width: int, repeats: int, mode: str,
                  chunk_frames: int, chunk_latents: int) -> dict:
  """Our VAE (random init) on a random clip: rates, the process's peak RSS, then XLA's
  memory analysis of the programs that ran (compiled after the RSS was read)."""
  import jax
  import numpy as np
  from videogen.vae import chunked
  model, params = build(config)
  video = np.random.default_rng(frames).uniform(
      -1, 1, (1, frames, height, width, model.spec.codecs[0].in_channels)).astype(np.float32)
  one_shot = mode == "one-shot"
  enc_chunk, dec_chunk = (None, None) if one_shot else (chunk_frames, chunk_latents)
  encode = lambda: chunked.encode(model, params, video, enc_chunk, on_host=True)
  latents = np.asarray(encode())[..., :model.spec.latent_channels]
  decode = lambda: chunked.decode(model, params, latents, dec_chunk, on_host=True)
  encode_s = _best_wall(encode, repeats)
  decode_s = _best_wall(decode, repeats)
  assert np.asarray(decode()).shape[1] == frames
  rss = peak_rss_mib()
  enc_peak = peak_bytes(model, "encode_moments", params, video.shape, enc_chunk)
  dec_peak = peak_bytes(model, "decode", params, latents.shape, dec_chunk)
  return {"side": "videogen",
          "params_M": sum(x.size for x in jax.tree.leaves(params)) / 1e6,
          "frames": frames, "height": height, "width": width,
          "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "path": "one pass" if one_shot else
                  f"chunks of {chunk_frames} frames / {chunk_latents} latents",
          **_rates(frames, encode_s, decode_s), "peak_rss_mib": rss,
          "xla_encode_peak_mib": None if enc_peak is None else enc_peak / MIB,
          "xla_decode_peak_mib": None if dec_peak is None else dec_peak / MIB}


def vs_ratios(ours: dict, theirs: dict) -> dict:
  """Ours / theirs: frames/s (above 1 = we are faster) and peak RSS (below 1 = we use less)."""
  return {"ratio": "videogen/pytorch", "frames": ours["frames"],
          **{k: ours[k] / theirs[k] for k in ("encode_fps", "decode_fps", "both_fps",
                                               "peak_rss_mib")}}


def _rounded(row: dict) -> dict:
  return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def run_vs_pytorch(argv_flags: list[str], frames: list[int]) -> list[dict]:
  """Both sides for every clip length, each in a fresh subprocess; prints the JSON lines."""
  import subprocess
  # Our side runs with XLA CPU's memory-minimising scheduler, as VAE-heavy jobs should
  # (videogen.vae.cpu_scheduler); an XLA_FLAGS that chooses a scheduler is left as it is.
  env = {"pytorch": None, "videogen": {
      **os.environ, "XLA_FLAGS": with_lean_scheduler(os.environ.get("XLA_FLAGS", ""))}}
  rows = []
  for n in frames:
    pair = {}
    for side in ("pytorch", "videogen"):
      result = subprocess.run(
          [sys.executable, "-m", "videogen.bench", "vae", f"--vs_side={side}", f"--frames={n}",
           *argv_flags], capture_output=True, text=True, env=env[side])
      if result.returncode:
        exit_with_error(f"the {side} side failed at {n} frames: "
                        f"{result.stderr.strip().splitlines()[-1:]}")
      pair[side] = json.loads(result.stdout.strip().splitlines()[-1])
      print(json.dumps(pair[side]), flush=True)
    ratio = _rounded(vs_ratios(pair["videogen"], pair["pytorch"]))
    print(json.dumps(ratio), flush=True)
    rows += [pair["pytorch"], pair["videogen"], ratio]
  return rows


def _vs_config():
  """`--config` when given, else base_config() (the released CogVideoX widths)."""
  if flags.FLAGS["config"].present:
    return _CONFIG.value, load_config_file(_CONFIG.value)
  from videogen.config import base_config
  return "base_config", base_config()


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  try:
    frames = [int(n) for n in _FRAMES.value]
  except ValueError:
    exit_with_error(f"--frames: expected integers, got {','.join(_FRAMES.value)!r}")
  if _VS_SIDE.value or _VS_PYTORCH.value:
    if not flags.FLAGS["frames"].present:
      frames = [17]
    try:
      name, config = _vs_config()
      diffusers_kwargs(config.vae)
    except OSError as e:
      exit_with_error(f"--config: {e}")
    except ValueError as e:
      exit_with_error(str(e))
    if _VS_SIDE.value:  # one side, one clip length, in this process: one JSON line
      args = (config, frames[0], _HEIGHT.value, _WIDTH.value, _REPEATS.value)
      row = (pytorch_side(*args) if _VS_SIDE.value == "pytorch" else videogen_side(
          *args, _VS_MODE.value, _CHUNK_FRAMES.value, _CHUNK_LATENTS.value))
      print(json.dumps(_rounded({"config": name, **row})))
      return
    passed = [f"--{k}={flags.FLAGS[k].value}" for k in
              ("height", "width", "repeats", "vs_mode", "chunk_frames", "chunk_latents")]
    if flags.FLAGS["config"].present:
      passed.append(f"--config={_CONFIG.value}")
    rows = run_vs_pytorch(passed, frames)
    if _OUTPUT.value:
      with open(_OUTPUT.value, "w") as f:
        json.dump(rows, f, indent=2)
    return
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
