"""How many generated images are faces: a nearest-neighbour test against the training faces.

An image counts as a face when its best Pearson correlation with any of the training faces is at least
as high as that of a typical real face with its nearest *other* training face (the 5th percentile of those,
so that 95% of the real faces would pass). Pure noise correlates with nothing (about 0.1-0.2 at 32x32);
a face, even a new one, lines up with some training face's outline and shading. It is a proxy, made for
the eta-grid question ("is this row a face or noise?"), not a quality score.

Correlation alone passes a face under visible noise (the shipped demo model's eta 0.1-0.5 rows: 33 of 40 by
correlation, 20 of them plainly noisy to the eye), so an image must also be no rougher than the roughest training
face. Roughness is the mean absolute difference of neighbouring pixels ([0, 1] scale): 0.030-0.082 on the 100 LFW
faces at 32x32, 0.10-0.13 on the noisy cells.
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


def roughness(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertically and horizontally neighbouring pixels, per image [N, C, H, W]."""
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return (vertical + horizontal) / 2


def count_faces(images: torch.Tensor, training: torch.Tensor) -> dict:
    """How many of `images` [N, C, H, W] (values in [0, 1]) are clean faces.

    {'faces': n, 'total': N, 'threshold': t, 'max_roughness': r, 'per_image': [correlation, ...],
    'roughness': [...], 'is_face': [bool, ...]}; a face correlates with a training face at least `threshold` and
    is no rougher than `max_roughness`, the roughest training face.
    """
    if images.shape[1:] != training.shape[1:]:
        raise ValueError(f"images {tuple(images.shape[1:])} and training faces {tuple(training.shape[1:])} differ")
    threshold = face_threshold(training)
    max_roughness = float(roughness(training).max())
    scores = nearest_correlations(images, training)
    rough = roughness(images)
    is_face = (scores >= threshold) & (rough <= max_roughness)
    return {
        "faces": int(is_face.sum()),
        "total": len(images),
        "threshold": threshold,
        "max_roughness": round(max_roughness, 4),
        "per_image": [round(float(s), 4) for s in scores],
        "roughness": [round(float(r), 4) for r in rough],
        "is_face": is_face.tolist(),
    }
