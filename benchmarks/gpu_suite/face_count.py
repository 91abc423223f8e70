"""How many generated images are faces: a nearest-neighbour test against the training faces.

An image counts as a face when its best Pearson correlation with any of the training faces is at least
as high as that of a typical real face with its nearest *other* training face (the 5th percentile of those,
so that 95% of the real faces would pass). Pure noise correlates with nothing (about 0.1-0.2 at 32x32);
a face, even a new one, lines up with some training face's outline and shading. It is a proxy, made for
the eta-grid question ("is this row a face or noise?"), not a quality score.
"""

from __future__ import annotations

import torch


def _standardise(images: torch.Tensor) -> torch.Tensor:
    flat = images.reshape(len(images), -1).double()
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_correlations(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Best Pearson correlation of each image with the reference images (same shape [C, H, W])."""
    return (_standardise(images) @ _standardise(reference).T).max(dim=1).values


def face_threshold(training: torch.Tensor, percentile: float = 5.0) -> float:
    """The `percentile` of each training face's correlation with its nearest other training face."""
    correlations = _standardise(training) @ _standardise(training).T
    correlations.fill_diagonal_(-1.0)
    return float(torch.quantile(correlations.max(dim=1).values, percentile / 100))


def count_faces(images: torch.Tensor, training: torch.Tensor) -> dict:
    """{'faces': n, 'total': N, 'threshold': t, 'per_image': [correlation, ...]} for images [N, C, H, W]."""
    if images.shape[1:] != training.shape[1:]:
        raise ValueError(f"images {tuple(images.shape[1:])} and training faces {tuple(training.shape[1:])} differ")
    threshold = face_threshold(training)
    scores = nearest_correlations(images, training)
    return {
        "faces": int((scores >= threshold).sum()),
        "total": len(images),
        "threshold": threshold,
        "per_image": [round(float(s), 4) for s in scores],
    }
