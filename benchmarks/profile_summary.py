"""Where a profiled step's device time goes: `python -m videogen.bench --profile DIR` writes
jax.profiler traces; this prints, per trace, device time by kernel class and the top kernels.

    python benchmarks/profile_summary.py DIR [--top 25] [--json]

The trace (`*.xplane.pb`) is decoded with a ~40-line protobuf wire reader, so neither
tensorflow nor xprof is needed on the machine that reads it.
"""
import argparse
import collections
import glob
import json
import os
import re

# Kernel classes by name, first match wins (cuDNN / cuBLAS / XLA fusion naming).
CLASSES = (
    ("attention", re.compile(r"cudnn|fmha|flash|sdpa|attention", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|xmma|cublas|matmul|dot", re.I)),
    ("convolution", re.compile(r"conv", re.I)),
    ("copy/transpose", re.compile(r"copy|transpose|memcpy|memset|dynamic.update", re.I)),
    ("reduction", re.compile(r"reduce|input_", re.I)),
    ("elementwise fusion", re.compile(r"fusion|loop_|wrapped|convert|multiply|add", re.I)),
)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
  value = shift = 0
  while True:
    byte = buf[i]
    value |= (byte & 0x7F) << shift
    i += 1
    if byte < 0x80:
      return value, i
    shift += 7


def _fields(buf: bytes):
  """(field number, value) of one protobuf message: ints for varints, bytes otherwise."""
  i = 0
  while i < len(buf):
    key, i = _varint(buf, i)
    number, kind = key >> 3, key & 7
    if kind == 0:
      value, i = _varint(buf, i)
    elif kind == 2:
      size, i = _varint(buf, i)
      value, i = buf[i:i + size], i + size
    elif kind == 1:
      value, i = buf[i:i + 8], i + 8
    elif kind == 5:
      value, i = buf[i:i + 4], i + 4
    else:
      raise ValueError(f"unsupported protobuf wire type {kind}")
    yield number, value


def device_kernel_times(xspace: bytes) -> dict[str, float]:
  """Total seconds per kernel name over the GPU/TPU device planes of one XSpace."""
  totals = collections.Counter()
  for number, plane in _fields(xspace):
    if number != 1:  # XSpace.planes
      continue
    fields = list(_fields(plane))
    name = next((v.decode() for n, v in fields if n == 2), "")
    if not name.startswith("/device:") or "CPU" in name:
      continue
    names = {}
    for n, entry in fields:  # XPlane.event_metadata: map<int64, XEventMetadata>
      if n == 4:
        entry = dict(_fields(entry))
        meta = dict(_fields(entry.get(2, b"")))
        names[entry.get(1, 0)] = meta.get(2, b"").decode(errors="replace")
    for n, line in fields:  # XPlane.lines → XLine.events → (metadata_id, duration_ps)
      if n != 3:
        continue
      line_fields = list(_fields(line))
      line_name = next((v.decode() for k, v in line_fields if k == 2), "")
      if "XLA Ops" in line_name or "Steps" in line_name or "Modules" in line_name:
        continue  # derived timelines that repeat the kernels' time
      for k, event in line_fields:
        if k == 4:
          event = dict(_fields(event))
          totals[names.get(event.get(1, 0), "?")] += event.get(3, 0) * 1e-12
  return dict(totals)


def classify(kernel: str) -> str:
  return next((label for label, pattern in CLASSES if pattern.search(kernel)), "other")


def summarize(totals: dict[str, float], top: int) -> dict:
  by_class = collections.Counter()
  for kernel, seconds in totals.items():
    by_class[classify(kernel)] += seconds
  total = sum(totals.values()) or 1.0
  return {"device_seconds": total,
          "by_class": {k: round(v / total, 4) for k, v in by_class.most_common()},
          "top_kernels": [(k[:120], round(v / total, 4), classify(k))
                          for k, v in collections.Counter(totals).most_common(top)]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folder")
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  paths = sorted(glob.glob(os.path.join(args.folder, "**", "*.xplane.pb"), recursive=True))
  if not paths:
    raise SystemExit(f"error: no *.xplane.pb under {args.folder}")
  for path in paths:
    with open(path, "rb") as f:
      summary = summarize(device_kernel_times(f.read()), args.top)
    summary["trace"] = os.path.relpath(path, args.folder)
    if args.json:
      print(json.dumps(summary))
      continue
    print(f"\n{summary['trace']}: {summary['device_seconds']:.3f} s of device time")
    for label, share in summary["by_class"].items():
      print(f"  {label:20s} {share:6.1%}")
    for kernel, share, label in summary["top_kernels"]:
      print(f"  {share:6.1%}  {label:18s} {kernel}")


if __name__ == "__main__":
  main()
