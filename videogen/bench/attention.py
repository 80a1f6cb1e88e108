"""Attention backends side by side: error against an f32 reference, and fwd+bwd speed.

    python -m videogen.bench attention [--lengths 4096,17550] [--heads 12] [--head_dim 64] \
        [--batch 1] [--dtype bfloat16] [--backends xla,cudnn,blockwise,reference] [--json]

For each backend and sequence length: the largest absolute error of the output and of the
q/k/v gradients against the einsum reference computed in float32 from the same (rounded)
inputs, with and without a key mask (the last quarter of keys masked, as padded text is),
and the fwd+bwd time with its FLOP/s (attention's 4·B·H·Lq·Lk·Dh forward FLOPs, ×3.5 with
the backward). A backend this platform lacks (cuDNN off a GPU) is a `skipped` row with the
reason, not a failure. This is how the cuDNN flash path is checked on a GPU machine.
"""
import json
import sys
import time

from absl import flags

from videogen.cli import parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_LENGTHS = flags.DEFINE_list("lengths", ["4096"], "Sequence lengths (queries = keys).")
_HEADS = flags.DEFINE_integer("heads", 12, "Attention heads.")
_HEAD_DIM = flags.DEFINE_integer("head_dim", 64, "Channels per head.")
_BATCH = flags.DEFINE_integer("batch", 1, "Batch size.")
_DTYPE = flags.DEFINE_string("dtype", "bfloat16", "Input dtype of the backends under test.")
_BACKENDS = flags.DEFINE_list("backends", ["xla", "cudnn", "blockwise", "reference"],
                              "Backends of videogen.models.attention.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed fwd+bwd calls (after one warm-up).")
_JSON = flags.DEFINE_bool("json", False, "One JSON object per row instead of a table.")


def random_inputs(key, batch: int, length: int, heads: int, head_dim: int, dtype):
  """q, k, v `(B, L, H, Dh)` in `dtype`, a cotangent for the backward, and a key mask with
  the last quarter of keys off."""
  import jax
  import jax.numpy as jnp
  q, k, v, cotangent = (jax.random.normal(sub, (batch, length, heads, head_dim)).astype(dtype)
                        for sub in jax.random.split(key, 4))
  mask = jnp.broadcast_to(jnp.arange(length) < length - length // 4, (batch, length))
  return q, k, v, cotangent, mask


def forward_and_grads(backend: str, q, k, v, cotangent, mask):
  """(output, (dq, dk, dv)) of attention under `backend`, jitted."""
  import jax
  from videogen.models.attention import dot_product_attention

  def run(q, k, v):
    out, pullback = jax.vjp(lambda q, k, v: dot_product_attention(q, k, v, mask, backend),
                            q, k, v)
    return out, pullback(cotangent.astype(out.dtype))

  return jax.jit(run)(q, k, v)


def max_errors(backend: str, q, k, v, cotangent, mask) -> dict:
  """Largest |backend − f32 reference| of the output and each gradient."""
  import jax.numpy as jnp
  out, grads = forward_and_grads(backend, q, k, v, cotangent, mask)
  f32 = [a.astype(jnp.float32) for a in (q, k, v, cotangent)]
  ref_out, ref_grads = forward_and_grads("reference", *f32, mask)
  errors = {"out": out, "dq": grads[0], "dk": grads[1], "dv": grads[2]}
  refs = {"out": ref_out, "dq": ref_grads[0], "dk": ref_grads[1], "dv": ref_grads[2]}
  return {name: float(jnp.max(jnp.abs(errors[name].astype(jnp.float32) - refs[name])))
          for name in errors} | {"ref_out_absmax": float(jnp.max(jnp.abs(ref_out)))}


def time_fwd_bwd(backend: str, q, k, v, cotangent, mask, repeats: int) -> float:
  import jax
  from videogen.models.attention import dot_product_attention
  loss = jax.jit(jax.grad(lambda q, k, v: (dot_product_attention(q, k, v, mask, backend)
                                           * cotangent).sum().astype("float32"),
                          argnums=(0, 1, 2)))
  jax.block_until_ready(loss(q, k, v))
  start = time.perf_counter()
  for _ in range(repeats):
    grads = loss(q, k, v)
  jax.block_until_ready(grads)
  return (time.perf_counter() - start) / repeats


def compare(backend: str, batch: int, length: int, heads: int, head_dim: int, dtype,
            repeats: int) -> list[dict]:
  """One row per mask setting: errors and timing, or `skipped` with the reason."""
  import jax
  q, k, v, cotangent, mask = random_inputs(jax.random.PRNGKey(0), batch, length, heads,
                                           head_dim, dtype)
  flops = 3.5 * 4 * batch * heads * length * length * head_dim
  rows = []
  for masked in (False, True):
    row = {"backend": backend, "length": length, "heads": heads, "head_dim": head_dim,
           "batch": batch, "dtype": str(dtype), "key_mask": masked}
    key_mask = mask if masked else None
    try:
      row |= max_errors(backend, q, k, v, cotangent, key_mask)
      seconds = time_fwd_bwd(backend, q, k, v, cotangent, key_mask, repeats)
      row |= {"fwd_bwd_ms": seconds * 1e3, "TFLOP_s": flops / seconds / 1e12}
    except Exception as e:  # a backend this platform or shape lacks: report, go on
      row["skipped"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    rows.append(row)
  return rows


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  import jax
  import jax.numpy as jnp
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  rows = [row for length in _LENGTHS.value for backend in _BACKENDS.value
          for row in compare(backend, _BATCH.value, int(length), _HEADS.value,
                             _HEAD_DIM.value, jnp.dtype(_DTYPE.value), _REPEATS.value)]
  for row in rows:
    if _JSON.value:
      print(json.dumps(row))
    else:
      print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()))


if __name__ == "__main__":
  main(sys.argv)
