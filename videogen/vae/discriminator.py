"""A 3D PatchGAN discriminator for VAE training (the NLayerDiscriminator3D of Open-Sora /
MAGVIT, after pix2pix's NLayerDiscriminator).

Input: video `(B, T, H, W, C)` in [-1, 1]. Output: one logit per spatio-temporal patch,
`(B, t, h, w, 1)` in f32. Layers: conv 4×4×4 stride 2 → leaky ReLU(0.2); then
`num_layers - 1` × (conv 4×4×4 stride 2, channels doubling up to 8× → GroupNorm → leaky
ReLU); then conv 4×4×4 stride 1 → GroupNorm → leaky ReLU; then conv 4×4×4 stride 1 to one
channel.

The discriminator is not causal: time is padded on both sides like space. Strided convs pad
1 on each side (pix2pix), which halves even lengths exactly. Stride-1 convs pad (1, 2), the
'SAME' split for an even kernel, so they keep the size: pix2pix's pad 1 would shrink each by
one and leave nothing of a 16×16 frame or a one-frame clip. Time is strided only while it is
at least 4 frames long (else stride 1), so short clips, single frames included, never lose
the time axis; height and width are halved by each strided conv (`num_layers` times) while
they are at least 2 pixels, so frames smaller than 2**num_layers end at 1×1 patches rather
than at zero size. Parameter shapes depend only on the channels, not on the clip shape.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from videogen.vae.model import Conv, GroupNorm

KERNEL = 4
STRIDED_PAD = (1, 1)
SAME_PAD = ((KERNEL - 1) // 2, KERNEL // 2)  # (1, 2)


def norm_groups(channels: int, max_groups: int = 32) -> int:
  """The largest group count ≤ `max_groups` that divides `channels`."""
  return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


class PatchDiscriminator3D(nn.Module):
  """Video → patch logits `(B, t, h, w, 1)`; see the module docstring for the layout."""

  channels: int = 64
  num_layers: int = 3
  dtype: str = "float32"

  def _conv(self, x: jax.Array, features: int, stride: int, name: str,
            out_axis: str | None = "vae_channels") -> jax.Array:
    """A 4×4×4 conv padded on both sides; a stride of 2 applies to time only while T ≥ 4
    and to height/width only while they are ≥ 2 (see above)."""
    strides = tuple(stride if n >= min_n else 1 for n, min_n in zip(x.shape[1:4], (4, 2, 2)))
    t_pad, h_pad, w_pad = (STRIDED_PAD if s == 2 else SAME_PAD for s in strides)
    x = jnp.pad(x, ((0, 0), t_pad, (0, 0), (0, 0), (0, 0)))
    return Conv(features, (KERNEL,) * 3, strides, (h_pad, w_pad), dtype=self.dtype,
                out_axis=out_axis, name=name)(x)

  def _norm_act(self, x: jax.Array, name: str) -> jax.Array:
    x = GroupNorm(norm_groups(x.shape[-1]), stats_over="clip", name=name)(x)
    return nn.leaky_relu(x, 0.2)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.leaky_relu(self._conv(x, self.channels, 2, "conv_in"), 0.2)
    for n in range(1, self.num_layers):
      h = self._conv(h, self.channels * min(2 ** n, 8), 2, f"down_{n}_conv")
      h = self._norm_act(h, f"down_{n}_norm")
    h = self._conv(h, self.channels * min(2 ** self.num_layers, 8), 1, "mid_conv")
    h = self._norm_act(h, "mid_norm")
    return self._conv(h, 1, 1, "conv_out", out_axis=None).astype(jnp.float32)
