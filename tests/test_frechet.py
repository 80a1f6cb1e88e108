"""The Fréchet distance behind FVD, against scipy and closed forms; streaming statistics
equal one-shot ones."""
import numpy as np
import pytest

from videogen.eval.frechet import FeatureStats, frechet_distance


def _scipy_frechet(m1, c1, m2, c2):
  from scipy import linalg
  root = linalg.sqrtm(c1 @ c2).real
  return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * root))


def test_frechet_distance_matches_scipy_and_closed_forms():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 6, 6))
  c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
  m1, m2 = rng.normal(size=(2, 6))
  assert frechet_distance(m1, c1, m2, c2) == pytest.approx(_scipy_frechet(m1, c1, m2, c2),
                                                           rel=1e-6)
  assert frechet_distance(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-8)
  # Diagonal Gaussians: |Δμ|² + Σ (σ₁ − σ₂)².
  s1, s2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])
  assert frechet_distance(np.zeros(3), np.diag(s1 ** 2), np.ones(3), np.diag(s2 ** 2)) == (
      pytest.approx(3.0 + 1.0 + 0.0 + 4.0))


def test_streaming_statistics_equal_one_shot_and_merge_across_shards():
  features = np.random.default_rng(1).normal(size=(1000, 5)) * [1, 2, 3, 4, 5] + 7
  stats = FeatureStats(5)
  for batch in np.array_split(features, 13):
    stats.update(batch)
  mean, cov = stats.mean_and_covariance()
  np.testing.assert_allclose(mean, features.mean(0), rtol=1e-10)
  np.testing.assert_allclose(cov, np.cov(features, rowvar=False), rtol=1e-8)
  halves = FeatureStats(5).update(features[:400]).merge(FeatureStats(5).update(features[400:]))
  np.testing.assert_allclose(halves.mean_and_covariance()[1], cov, rtol=1e-10)
  with pytest.raises(ValueError, match="at least 2"):
    FeatureStats(5).update(features[:1]).mean_and_covariance()

