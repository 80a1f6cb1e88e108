"""The causal video VAE (CogVideoX layout) and its factorized 2D + temporal variant.

Videos are channels-last `(B, T, H, W, C)` in [-1, 1]. A `Codec` is one encoder/decoder pair;
`causal3d` is one codec that compresses 8× in space and 4× in time (`1 + 4k` frames →
`1 + k` latent frames). `factorized` (Open-Sora style) is a per-frame 2D codec followed by a
temporal codec that compresses only time.

Causality: convolutions pad time only from the past (the first frame is repeated), and the
first frame is kept apart when time is halved or doubled. With `norm_scope="frame"` the
GroupNorm statistics are per frame too, so frame t never influences latents before it and a
clip can be encoded in temporal chunks that carry each convolution's last frames in the
flax collection `cache` (see `videogen.vae.chunked`): chunked equals one-shot exactly.
`norm_scope="clip"` is CogVideoX's GroupNorm over the whole clip: needed to run its
weights, but not causal and only approximately chunkable (as in diffusers).

Module and parameter names mirror diffusers' `AutoencoderKLCogVideoX`, so its state dict
maps onto this tree by renaming (`videogen.formats.cogvideox_vae`).
"""
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from videogen.config import ConfigError, check_choice
from videogen.models.layers import constrain
from videogen.vae.losses import RECON_KINDS

VARIANTS = ("causal3d", "factorized")
NORM_SCOPES = ("frame", "clip")
ACTIVATION = ("batch", "frames", "height", "width", "vae_channels")


@dataclasses.dataclass(frozen=True)
class CodecSpec:
  """One encoder/decoder pair. Level i downsamples space if `i < spatial_levels` and time if
  `i < temporal_levels` (the last level never downsamples)."""

  in_channels: int = 3
  latent_channels: int = 16
  block_channels: tuple[int, ...] = (128, 256, 256, 512)
  layers_per_block: int = 3
  spatial_levels: int = 3
  temporal_levels: int = 2
  time_kernel: int = 3
  norm_groups: int = 32
  norm_scope: str = "frame"
  use_quant_conv: bool = False
  dtype: str = "float32"

  @property
  def spatial_factor(self) -> int:
    return 2 ** self.spatial_levels

  @property
  def temporal_factor(self) -> int:
    return 2 ** self.temporal_levels


def conv_kernel_init():
  return nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class Conv(nn.Module):
  """A 3D convolution over `(B, T, H, W, C)` with explicit padding; kernel `(kt, kh, kw, I, O)`.

  Time padding is the caller's business (causal): `history`, when given, is the `kt - 1`
  frames that come before `x` (the output has `x`'s frame count). `spatial_padding` is zeros
  on (H, W). `out_axis=None` keeps a layer with a handful of outputs (pixels, logits)
  unsharded."""

  features: int
  kernel: tuple[int, int, int]
  strides: tuple[int, int, int] = (1, 1, 1)
  spatial_padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
  dtype: str = "float32"
  out_axis: str | None = "vae_channels"

  @nn.compact
  def __call__(self, x: jax.Array, history: jax.Array | None = None) -> jax.Array:
    kernel = self.param("kernel", nn.with_logical_partitioning(
        conv_kernel_init(), (None, None, None, None, self.out_axis)),
        (*self.kernel, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros,
                                                           (self.out_axis,)),
                      (self.features,), jnp.float32)
    if history is not None:
      history = history.astype(self.dtype)
    y = conv3d(x.astype(self.dtype), kernel.astype(self.dtype), self.strides,
               self.spatial_padding, history)
    return constrain(y + bias.astype(self.dtype), ACTIVATION)


def conv3d_reference(x: jax.Array, kernel: jax.Array, strides: tuple[int, int, int],
                     spatial_padding, history: jax.Array | None = None) -> jax.Array:
  """The plain 3D convolution of `history ++ x` along time (no time padding): what `conv3d`
  computes, and what this module computed before it."""
  if history is not None:
    x = jnp.concatenate([history, x], axis=1)
  return jax.lax.conv_general_dilated(x, kernel, strides, ((0, 0), *spatial_padding),
                                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def _conv2d(x: jax.Array, kernel: jax.Array, strides, spatial_padding) -> jax.Array:
  """(B, T, H, W, C) → frames folded into the batch, one 2D convolution."""
  b, t = x.shape[:2]
  y = jax.lax.conv_general_dilated(x.reshape(b * t, *x.shape[2:]), kernel, strides,
                                   spatial_padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y.reshape(b, t, *y.shape[1:])


def conv3d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int, int],
           spatial_padding, history: jax.Array | None = None) -> jax.Array:
  """`conv3d_reference` in the forms XLA CPU runs fastest (equal up to f32 summation order,
  tests/test_vae_fast_paths.py). Frames fold into the batch and each of the kernel's `kt`
  temporal taps is a 2D convolution of a window of frames, the taps summed: XLA CPU sends 2D
  convolutions to its fast library path, and runs 3D ones at about half that speed on the
  VAE's shapes (docs/benchmarks.md, "Where the VAE's time goes"). The last tap's window is
  `x` itself and the others start in `history`, so the padded clip `history ++ x` is never
  built. A 1×1×1 kernel is a matmul over channels."""
  kt = kernel.shape[0]
  past = 0 if history is None else history.shape[1]
  frames = x.shape[1] + past - kt + 1
  if strides[0] != 1 or frames < 1 or (past and past != kt - 1):
    return conv3d_reference(x, kernel, strides, spatial_padding, history)
  if kernel.shape[:3] == (1, 1, 1) and strides == (1, 1, 1):
    return jnp.einsum("bthwc,co->bthwo", x, kernel[0, 0, 0])
  y = None
  for tap in range(kt):
    if tap < past:  # frames tap .. tap + frames of history ++ x
      from_history = min(past - tap, frames)
      window = jnp.concatenate([history[:, tap:tap + from_history],
                                x[:, :frames - from_history]], axis=1)
    else:
      window = x[:, tap - past:tap - past + frames]
    part = _conv2d(window, kernel[tap], strides[1:], spatial_padding)
    y = part if y is None else y + part
  return y


class CausalConv3d(nn.Module):
  """Convolution that sees only the present and past frames.

  Before the first frame it sees copies of the first frame. When the `cache` collection is
  mutable it records its last `kt - 1` input frames, and reads them on the next chunk."""

  features: int
  kernel: tuple[int, int, int] = (3, 3, 3)
  dtype: str = "float32"
  out_axis: str | None = "vae_channels"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    past = self.kernel[0] - 1
    history = tail = None
    if past:
      if self.has_variable("cache", "past"):
        history = self.get_variable("cache", "past").astype(x.dtype)
      else:
        history = jnp.repeat(x[:, :1], past, axis=1)
      if self.is_mutable_collection("cache"):
        tail = x[:, -past:] if x.shape[1] >= past else jnp.concatenate(
            [history, x], axis=1)[:, -past:]
    pad_h, pad_w = (self.kernel[1] - 1) // 2, (self.kernel[2] - 1) // 2
    y = Conv(self.features, self.kernel, spatial_padding=((pad_h, pad_h), (pad_w, pad_w)),
             dtype=self.dtype, out_axis=self.out_axis, name="conv")(x, history)
    if tail is not None:
      self.put_variable("cache", "past", tail)
      y = after(y, tail)
    return y


def after(y: jax.Array, dep: jax.Array) -> jax.Array:
  """`y` (bit for bit, while `dep` is finite), computed after `dep`.

  For the cached frames a chunk hands on (program outputs besides the decoded frames): XLA
  CPU's memory-minimising scheduler (`videogen.vae.cpu_scheduler`) otherwise
  computes them at the program's end, keeping every layer's input alive until then (the
  released-width decoder's first chunk: 2.3 GB of temporaries instead of 0.34 GB). A data
  dependency is the one ordering XLA keeps: `optimization_barrier` is gone before it
  schedules, and a dependency on one element is fused away. The max cannot overflow."""
  return y + 0 * jnp.max(dep).astype(y.dtype)


class GroupNorm(nn.Module):
  """GroupNorm (f32 statistics) per frame (`stats_over="frame"`) or over the whole clip."""

  groups: int
  stats_over: str = "frame"  # (`scope` is taken: every flax Module has one)
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, h, w, c = x.shape
    grouped = x.astype(jnp.float32).reshape(b, t, h, w, self.groups, c // self.groups)
    axes = (2, 3, 5) if self.stats_over == "frame" else (1, 2, 3, 5)
    mean = grouped.mean(axes, keepdims=True)
    var = jnp.square(grouped - mean).mean(axes, keepdims=True)
    y = ((grouped - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones,
                                                             ("vae_channels",)), (c,))
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros,
                                                           ("vae_channels",)), (c,))
    return (y * scale + bias).astype(x.dtype)


def resize_like(z: jax.Array, frames: int, height: int, width: int,
                first_chunk: bool) -> jax.Array:
  """Nearest-neighbour resize of `z` to (frames, height, width) by integer repetition,
  keeping the clip's first frame apart (it stands for one frame, the others for several)."""
  z = jnp.repeat(jnp.repeat(z, height // z.shape[2], axis=2), width // z.shape[3], axis=3)
  if first_chunk and z.shape[1] > 1:
    # Every frame repeated, then all but one copy of the first dropped: the same frames as
    # `concatenate([z[:, :1], repeat(z[:, 1:])])`, but XLA fuses a repeat and a slice into
    # each consumer where it materialises a concatenation at full size (two per spatial
    # norm: 100 MiB less in the released-width decoder's 17-frame program).
    repeats = (frames - 1) // (z.shape[1] - 1)
    return jnp.repeat(z, repeats, axis=1)[:, repeats - 1:]
  return jnp.repeat(z, frames // z.shape[1], axis=1)


class SpatialNorm(nn.Module):
  """Decoder norm conditioned on the latents `zq` (MoVQ spatial norm, as in CogVideoX)."""

  groups: int
  stats_over: str
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, zq: jax.Array, first_chunk: bool) -> jax.Array:
    features = x.shape[-1]
    y = GroupNorm(self.groups, self.stats_over, name="norm_layer")(x)
    # The 1×1×1 convolutions commute with the nearest-neighbour resize: run them on the
    # latents and resize their outputs (the same values, a fraction of the work, and no
    # full-size copies of the latents).
    scale = CausalConv3d(features, (1, 1, 1), self.dtype, name="conv_y")(zq)
    shift = CausalConv3d(features, (1, 1, 1), self.dtype, name="conv_b")(zq)
    size = dict(frames=x.shape[1], height=x.shape[2], width=x.shape[3], first_chunk=first_chunk)
    return y * resize_like(scale, **size) + resize_like(shift, **size)


class ResnetBlock(nn.Module):
  """norm → SiLU → causal conv, twice, plus a (1×1×1 projected) shortcut."""

  features: int
  spec: CodecSpec
  spatial_norm: bool = False

  def _norm(self, name, x, zq, first_chunk):
    if self.spatial_norm:
      return SpatialNorm(self.spec.norm_groups, self.spec.norm_scope, self.spec.dtype,
                         name=name)(x, zq, first_chunk)
    return GroupNorm(self.spec.norm_groups, self.spec.norm_scope, name=name)(x)

  @nn.compact
  def __call__(self, x: jax.Array, zq: jax.Array | None, first_chunk: bool) -> jax.Array:
    kernel = (self.spec.time_kernel, 3, 3)
    h = nn.silu(self._norm("norm1", x, zq, first_chunk))
    h = CausalConv3d(self.features, kernel, self.spec.dtype, name="conv1")(h)
    h = nn.silu(self._norm("norm2", h, zq, first_chunk))
    h = CausalConv3d(self.features, kernel, self.spec.dtype, name="conv2")(h)
    if x.shape[-1] != self.features:
      x = Conv(self.features, (1, 1, 1), dtype=self.spec.dtype, name="conv_shortcut")(x)
    return x + h


def halve_time(x: jax.Array, first_chunk: bool) -> jax.Array:
  """Averages frame pairs; the clip's first frame stays alone (`1 + 2k` → `1 + k`)."""
  if first_chunk:
    first, rest = x[:, :1], x[:, 1:]
  else:
    first, rest = x[:, :0], x
  if rest.shape[1] % 2:
    raise ValueError(f"cannot halve {rest.shape[1]} frames after the first one")
  b, t, h, w, c = rest.shape
  pooled = rest.reshape(b, t // 2, 2, h, w, c).mean(2)
  return jnp.concatenate([first, pooled], axis=1)


def double_time(x: jax.Array, first_chunk: bool) -> jax.Array:
  """Inverse of `halve_time`: every frame but the clip's first is repeated."""
  if first_chunk:
    return jnp.concatenate([x[:, :1], jnp.repeat(x[:, 1:], 2, axis=1)], axis=1)
  return jnp.repeat(x, 2, axis=1)


class Resample(nn.Module):
  """Halves (`down`) or doubles (`up`) time and/or space, as CogVideoX does: time by frame
  pair averaging / repetition (first frame apart), space by a stride-2 3×3 convolution / a
  nearest ×2 upsample followed by a 3×3 convolution, per frame."""

  features: int
  spec: CodecSpec
  spatial: bool
  temporal: bool
  down: bool

  @nn.compact
  def __call__(self, x: jax.Array, first_chunk: bool) -> jax.Array:
    if self.temporal:
      x = (halve_time if self.down else double_time)(x, first_chunk)
    if not self.spatial:
      return x
    if self.down:  # pad right/bottom by one, then stride 2
      return Conv(self.features, (1, 3, 3), (1, 2, 2), ((0, 1), (0, 1)), self.spec.dtype,
                  name="conv")(x)
    x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
    return Conv(self.features, (1, 3, 3), spatial_padding=((1, 1), (1, 1)),
                dtype=self.spec.dtype, name="conv")(x)


class Encoder(nn.Module):
  """Video → posterior moments `(B, T', H', W', 2 * latent_channels)`."""

  spec: CodecSpec

  @nn.compact
  def __call__(self, x: jax.Array, first_chunk: bool = True) -> jax.Array:
    spec = self.spec
    kernel = (spec.time_kernel, 3, 3)
    x = constrain(x, ACTIVATION)
    h = CausalConv3d(spec.block_channels[0], kernel, spec.dtype, name="conv_in")(x)
    last = len(spec.block_channels) - 1
    for i, channels in enumerate(spec.block_channels):
      for j in range(spec.layers_per_block):
        h = ResnetBlock(channels, spec, name=f"down_blocks_{i}_resnets_{j}")(h, None, first_chunk)
      if i < last and (i < spec.spatial_levels or i < spec.temporal_levels):
        h = Resample(channels, spec, spatial=i < spec.spatial_levels,
                     temporal=i < spec.temporal_levels, down=True,
                     name=f"down_blocks_{i}_downsampler")(h, first_chunk)
    for j in range(2):
      h = ResnetBlock(spec.block_channels[-1], spec, name=f"mid_block_resnets_{j}")(
          h, None, first_chunk)
    h = nn.silu(GroupNorm(spec.norm_groups, spec.norm_scope, name="norm_out")(h))
    moments = CausalConv3d(2 * spec.latent_channels, kernel, spec.dtype, name="conv_out")(h)
    if spec.use_quant_conv:
      moments = Conv(2 * spec.latent_channels, (1, 1, 1), dtype=spec.dtype,
                     name="quant_conv")(moments)
    return moments.astype(jnp.float32)


class Decoder(nn.Module):
  """Latents `(B, T', H', W', latent_channels)` → video."""

  spec: CodecSpec

  @nn.compact
  def __call__(self, z: jax.Array, first_chunk: bool = True) -> jax.Array:
    spec = self.spec
    kernel = (spec.time_kernel, 3, 3)
    z = constrain(z, ACTIVATION)
    if spec.use_quant_conv:
      z = Conv(spec.latent_channels, (1, 1, 1), dtype=spec.dtype, name="post_quant_conv")(z)
    channels = tuple(reversed(spec.block_channels))
    h = CausalConv3d(channels[0], kernel, spec.dtype, name="conv_in")(z)
    for j in range(2):
      h = ResnetBlock(channels[0], spec, spatial_norm=True, name=f"mid_block_resnets_{j}")(
          h, z, first_chunk)
    last = len(channels) - 1
    for i, features in enumerate(channels):
      for j in range(spec.layers_per_block + 1):
        h = ResnetBlock(features, spec, spatial_norm=True, name=f"up_blocks_{i}_resnets_{j}")(
            h, z, first_chunk)
      # Mirror of the encoder: the deepest levels come first on the way up.
      level = last - 1 - i
      if i < last and (level < spec.spatial_levels or i < spec.temporal_levels):
        h = Resample(features, spec, spatial=level < spec.spatial_levels,
                     temporal=i < spec.temporal_levels, down=False,
                     name=f"up_blocks_{i}_upsampler")(h, first_chunk)
    h = SpatialNorm(spec.norm_groups, spec.norm_scope, spec.dtype, name="norm_out")(
        h, z, first_chunk)
    out = CausalConv3d(spec.in_channels, kernel, spec.dtype, out_axis=None,
                       name="conv_out")(nn.silu(h))
    return out.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class VaeSpec:
  """`causal3d`: one codec. `factorized`: a per-frame 2D codec (`spatial`) whose posterior
  mean feeds a time-only codec (`temporal`)."""

  variant: str
  codecs: tuple[CodecSpec, ...]

  @property
  def latent_channels(self) -> int:
    return self.codecs[-1].latent_channels

  @property
  def spatial_factor(self) -> int:
    return math.prod(c.spatial_factor for c in self.codecs)

  @property
  def temporal_factor(self) -> int:
    return math.prod(c.temporal_factor for c in self.codecs)

  def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
    check_video_shape(self, frames, height, width)
    return ((frames - 1) // self.temporal_factor + 1, height // self.spatial_factor,
            width // self.spatial_factor)


def check_video_shape(spec: VaeSpec, frames: int, height: int, width: int,
                      channels: int | None = None) -> None:
  """One clear error for a clip this VAE cannot encode in one pass."""
  tf, sf = spec.temporal_factor, spec.spatial_factor
  if channels is not None and channels != spec.codecs[0].in_channels:
    raise ValueError(f"the VAE takes {spec.codecs[0].in_channels}-channel video; got "
                     f"{channels} channels")
  if (frames - 1) % tf:
    raise ValueError(f"the VAE needs 1 + {tf}k frames; got {frames}")
  if height % sf or width % sf:
    raise ValueError(f"the VAE needs height and width divisible by {sf}; got {height}×{width}")


class Autoencoder(nn.Module):
  """`encode(x) → (mean, logvar)`, `decode(z) → x`; `__call__` runs both (for `init`)."""

  spec: VaeSpec

  def setup(self):
    names = ("spatial", "temporal") if self.spec.variant == "factorized" else ("",)
    self.encoders = [Encoder(c, name=f"{n}_encoder".lstrip("_")) for n, c in
                     zip(names, self.spec.codecs)]
    self.decoders = [Decoder(c, name=f"{n}_decoder".lstrip("_")) for n, c in
                     zip(names, self.spec.codecs)]

  def encode_moments(self, x: jax.Array, first_chunk: bool = True) -> jax.Array:
    """Posterior moments `[mean, logvar]` concatenated on the channel axis."""
    for encoder in self.encoders[:-1]:
      x, _ = split_moments(encoder(x, first_chunk))  # the inner stage passes its mean on
    return self.encoders[-1](x, first_chunk)

  def encode(self, x: jax.Array, first_chunk: bool = True) -> tuple[jax.Array, jax.Array]:
    return split_moments(self.encode_moments(x, first_chunk))

  def decode(self, z: jax.Array, first_chunk: bool = True) -> jax.Array:
    for decoder in reversed(self.decoders):
      z = decoder(z, first_chunk)
    return z

  def __call__(self, x: jax.Array, key: jax.Array | None = None):
    """Reconstruction, mean and logvar; samples the posterior when `key` is given."""
    mean, logvar = self.encode(x)
    z = mean if key is None else mean + jnp.exp(0.5 * logvar) * jax.random.normal(
        key, mean.shape)
    return self.decode(z), mean, logvar


def split_moments(moments: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Encoder output → (mean, logvar), logvar clipped as in diffusers' DiagonalGaussian."""
  mean, logvar = jnp.split(moments, 2, axis=-1)
  return mean, jnp.clip(logvar, -30.0, 20.0)


def spec_from_config(vae) -> VaeSpec:
  """The `vae` config section → VaeSpec."""
  main = CodecSpec(
      latent_channels=vae.latent_channels, block_channels=tuple(vae.block_channels),
      layers_per_block=vae.layers_per_block, spatial_levels=vae.spatial_levels,
      temporal_levels=vae.temporal_levels, norm_groups=vae.norm_groups,
      norm_scope=vae.norm_scope, use_quant_conv=vae.use_quant_conv, dtype=vae.dtype)
  if vae.variant == "causal3d":
    return VaeSpec("causal3d", (main,))
  if vae.variant != "factorized":
    raise ValueError(f"vae.variant={vae.variant!r} is not one of {VARIANTS}")
  f = vae.factorized
  spatial = dataclasses.replace(main, latent_channels=f.spatial_latent_channels,
                                temporal_levels=0, time_kernel=1)
  temporal = dataclasses.replace(
      main, in_channels=f.spatial_latent_channels,
      block_channels=tuple(f.temporal_block_channels),
      layers_per_block=f.temporal_layers_per_block, spatial_levels=0)
  return VaeSpec("factorized", (spatial, temporal))


def check_config(vae, clip_shape: tuple[int, int, int] | None = None) -> VaeSpec:
  """The `vae` section → its VaeSpec, or one ConfigError line naming the key. With
  `clip_shape` (frames, height, width), for the VAE being trained: its norm groups divide
  every block's channels and it encodes that clip in one pass."""
  check_choice("vae.variant", vae.variant, VARIANTS)
  check_choice("vae.norm_scope", vae.norm_scope, NORM_SCOPES)
  check_choice("vae.recon_loss", vae.recon_loss, RECON_KINDS)
  spec = spec_from_config(vae)
  if clip_shape is None:
    return spec
  for codec in spec.codecs:
    bad = [c for c in codec.block_channels if c % codec.norm_groups]
    if bad:
      raise ConfigError(f"vae.norm_groups={codec.norm_groups} does not divide channel "
                        f"counts {bad}")
  try:
    check_video_shape(spec, *clip_shape)
  except ValueError as e:
    raise ConfigError(f"data shape for the VAE: {e}") from None
  return spec
