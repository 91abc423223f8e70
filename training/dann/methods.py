"""The loss terms of every DANN training mode, and the mean teacher's moving-average update.

    source_only / target_only:  cross-entropy on the labelled batch
    dann:          + domain BCE behind the gradient reversal (+ optional target entropy), Ganin et al. 2016
    mean_teacher:  + cross-entropy of the student on an augmented target view against the hard labels of an
                     exponential-moving-average teacher on the plain view, counted only where the teacher's
                     top probability reaches a threshold (self-ensembling, French et al. 2018, with
                     confidence-thresholded pseudo-labels in place of its squared difference)
    vada:          dann + target conditional entropy + virtual adversarial training on the target: the
                     prediction must not change inside a small ball around each target image, so the
                     decision boundaries move away from the target's dense regions (Shu et al. 2018)

Each function takes logits and returns a scalar, so that the tests can check it against a hand computation.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("source_only", "dann", "mean_teacher", "vada", "target_only")


def domain_loss(domain_logits: torch.Tensor, num_source: int) -> torch.Tensor:
    """BCE-with-logits of the domain classifier; the first `num_source` rows are source (label 0), the rest
    target (label 1)."""
    domains = torch.zeros_like(domain_logits, dtype=torch.float32)
    domains[num_source:] = 1.0
    return F.binary_cross_entropy_with_logits(domain_logits.float(), domains)


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the softmax predictions: low when the model is confident."""
    probs = logits.float().softmax(dim=1)
    return -(probs * probs.clamp_min(1e-8).log()).sum(dim=1).mean()


def pseudo_label_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked pseudo-label cross-entropy and the fraction of rows that passed the threshold.

    loss = (1/B) * sum_i [max_c q_ic >= threshold] * CE(student_i, argmax_c q_ic),  q = softmax(teacher).
    Dividing by the whole batch, not by the confident rows, keeps the term small while the teacher is
    unsure (early in training), which is the ramp-up this method needs.
    """
    confidence, pseudo_labels = teacher_logits.detach().float().softmax(dim=1).max(dim=1)
    mask = (confidence >= threshold).float()
    per_row = F.cross_entropy(student_logits.float(), pseudo_labels, reduction="none")
    return (per_row * mask).sum() / len(mask), mask.mean()


def kl_divergence(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(p || q), p = softmax(target_logits) held fixed, q = softmax(logits)."""
    p_log = target_logits.detach().float().log_softmax(dim=1)
    q_log = logits.float().log_softmax(dim=1)
    return (p_log.exp() * (p_log - q_log)).sum(dim=1).mean()


def _unit_rows(tensor: torch.Tensor) -> torch.Tensor:
    return tensor / tensor.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (tensor.ndim - 1))


def adversarial_perturbation(
    classify, images: torch.Tensor, epsilon: float, generator: torch.Generator, xi: float = 1e-3
) -> torch.Tensor:
    """The virtual adversarial perturbation of each image: L2 norm `epsilon`, in the direction that changes
    the prediction most (one power iteration from a random direction, Miyato et al. 2018).

    classify: images -> logits, deterministic (a model in eval mode): the clean and the nudged prediction
    must differ only by the nudge. `xi` is the nudge's norm: small enough for the second-order picture of
    the KL, large enough that float32 softmax differences are not rounding noise. Only the gradient with
    respect to the nudge is taken, so the model's parameters get none; the result is detached.
    """
    images = images.detach()
    with torch.no_grad():
        clean_logits = classify(images)
    direction = torch.randn(images.shape, generator=generator, device=generator.device).to(images)
    direction = (xi * _unit_rows(direction)).requires_grad_(True)
    with torch.enable_grad():
        divergence = kl_divergence(clean_logits, classify(images + direction))
        (gradient,) = torch.autograd.grad(divergence, direction)
    return epsilon * _unit_rows(gradient)


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of the student whose weights will follow it by exponential moving average."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student for the weights; BatchNorm buffers copied.

    The buffers are copied rather than averaged because the student's running statistics already are
    a moving average, and AdaBN re-estimates them on the target after training anyway.
    """
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.lerp_(s.detach(), 1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


@torch.no_grad()
def teacher_logits(teacher: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The teacher's logits on a target batch: no dropout, BatchNorm normalised by this batch's statistics.

    The student's running statistics describe the source/target mixture it trains on; a target-only batch
    normalised by its own statistics is what the model will see after AdaBN.
    """
    teacher.eval()
    norms = [m for m in teacher.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.train()
    logits = teacher(pixel_values).logits
    teacher.eval()
    return logits
