"""Sample-quality scores for generated time series: FID, IS and CAS on FCN representations."""

from __future__ import annotations

import numpy as np

from mamjax.maskgit import fcn as fcn_lib

__all__ = ["frechet_distance", "fid", "inception_score", "inception_score_splits", "classification_accuracy_score"]


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``.

    The symmetric form ``tr (S1^1/2 S2 S1^1/2)^1/2 = tr (S1 S2)^1/2`` computed with
    eigen-decompositions of symmetric PSD matrices (float64): exactly symmetric
    in its arguments up to rounding, and no complex parts as with ``sqrtm``.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        if not np.all(np.isfinite(c)) or not np.allclose(c, c.T, rtol=1e-6, atol=1e-10):
            raise ValueError(f"`{name}` must be a finite symmetric matrix.")
        w = np.linalg.eigvalsh(c)
        if w.min() < -1e-8 * max(abs(w).max(), 1e-300):
            raise ValueError(f"`{name}` must be positive semi-definite; smallest eigenvalue {w.min():.3g}.")
    s1 = _sqrt_psd(cov1)
    m = s1 @ cov2 @ s1
    tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean)


def fid(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fit to two feature sets ``[N1, d]``, ``[N2, d]``."""
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"`feats1`, `feats2` must be [N, d] with equal d; got {f1.shape}, {f2.shape}.")
    if min(len(f1), len(f2)) < 2:
        raise ValueError(f"`feats1`, `feats2` need at least 2 rows each for a covariance; got {len(f1)}, {len(f2)}.")
    return frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


def inception_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` with ``p(y)`` the mean of ``probs [N, C]``."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or not p.size or np.any(p < 0) or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError(f"`probs` must be [N, C] rows of probabilities (>= 0, summing to 1); got shape {p.shape}.")
    py = p.mean(0, keepdims=True)
    kl = np.sum(p * (np.log(p + eps) - np.log(py + eps)), axis=1)
    return float(np.exp(kl.mean()))


def inception_score_splits(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """IS as the paper reports it: :func:`inception_score` on ``num_splits`` consecutive equal parts.

    The ``N // num_splits`` rows of each part (the last ``N % num_splits`` rows are left out, as in
    the official evaluation) give one score each; returns their ``(mean, std)`` (population std).
    """
    p = np.asarray(probs)
    if isinstance(num_splits, bool) or not isinstance(num_splits, (int, np.integer)) or num_splits < 1:
        raise ValueError(f"`num_splits` must be a positive int; got {num_splits!r}.")
    if p.ndim != 2 or len(p) < num_splits:
        raise ValueError(f"`probs` must be [N, C] with N >= num_splits={num_splits}; got shape {p.shape}.")
    part = len(p) // num_splits
    scores = np.array([inception_score(p[i * part:(i + 1) * part]) for i in range(num_splits)])
    return float(scores.mean()), float(scores.std())


def classification_accuracy_score(x_gen: np.ndarray, y_gen: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                                  num_classes: int, *, num_steps: int = 500, seed: int = 0, workdir=None,
                                  progress: bool | None = None) -> float:
    """CAS (Ravuri & Vinyals, 2019): train an FCN on generated labelled series, accuracy on real test data."""
    clf = fcn_lib.train_fcn(x_gen, y_gen, num_classes, num_steps=num_steps, seed=seed, workdir=workdir,
                            desc="cas-fcn", progress=progress)
    probs, _ = fcn_lib.predict(clf, x_test)
    return float(np.mean(np.argmax(probs, -1) == np.asarray(y_test)))
