"""Fréchet distance between Gaussians fitted to feature sets, with streaming statistics.

FVD (and FID) is this distance between the statistics of real and generated videos'
network features: d² = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½). `FeatureStats`
accumulates count, sum and sum of outer products in float64 batch by batch, so no feature
set is ever held whole, and merges across hosts or shards by addition.
"""
import dataclasses

import numpy as np


@dataclasses.dataclass
class FeatureStats:
  """Running first and second moments of `dim`-wide feature vectors."""
  dim: int
  count: int = 0
  total: np.ndarray | None = None
  outer: np.ndarray | None = None

  def __post_init__(self):
    if self.total is None:
      self.total = np.zeros(self.dim, np.float64)
      self.outer = np.zeros((self.dim, self.dim), np.float64)

  def update(self, features) -> "FeatureStats":
    """Adds a batch `(N, dim)`; returns self."""
    features = np.asarray(features, np.float64).reshape(-1, self.dim)
    self.count += len(features)
    self.total += features.sum(0)
    self.outer += features.T @ features
    return self

  def merge(self, other: "FeatureStats") -> "FeatureStats":
    return FeatureStats(self.dim, self.count + other.count, self.total + other.total,
                        self.outer + other.outer)

  def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and unbiased covariance (as numpy.cov)."""
    if self.count < 2:
      raise ValueError(f"need at least 2 feature vectors for a covariance, have {self.count}")
    mean = self.total / self.count
    covariance = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
    return mean, covariance


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
  """Squared Fréchet distance between N(mean1, cov1) and N(mean2, cov2). The cross term's
  trace is taken through the symmetric Σ₁^½ Σ₂ Σ₁^½ (eigenvalues, no complex sqrtm)."""
  root1 = _psd_sqrt(np.asarray(cov1, np.float64))
  cross = np.linalg.eigvalsh(root1 @ np.asarray(cov2, np.float64) @ root1)
  diff = np.asarray(mean1, np.float64) - np.asarray(mean2, np.float64)
  return float(diff @ diff + np.trace(cov1) + np.trace(cov2)
               - 2 * np.sqrt(np.clip(cross, 0, None)).sum())

