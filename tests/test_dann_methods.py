"""The loss terms of training/dann/methods.py and the calibration helpers, against hand computations."""

import math

import pytest
import torch
import torch.nn as nn

from training.dann import methods
from training.dann.evaluation import expected_calibration_error, fit_temperature, logits_with_own_statistics


def test_pseudo_label_loss_by_hand():
    # teacher row 0: softmax([ln 9, 0]) = [0.9, 0.1] -> confident (>= 0.8), pseudo-label 0
    # teacher row 1: softmax([0, 0]) = [0.5, 0.5] -> below the threshold, masked out
    # teacher row 2: softmax([0, ln 19]) = [0.05, 0.95] -> confident, pseudo-label 1
    teacher = torch.tensor([[math.log(9.0), 0.0], [0.0, 0.0], [0.0, math.log(19.0)]])
    # student rows: probabilities [0.75, 0.25], anything, [0.2, 0.8]
    student = torch.tensor([[math.log(3.0), 0.0], [5.0, -5.0], [0.0, math.log(4.0)]], requires_grad=True)
    loss, passed = methods.pseudo_label_loss(student, teacher, threshold=0.8)
    expected = (-math.log(0.75) + 0.0 + -math.log(0.8)) / 3  # divided by the whole batch, not by 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert passed.item() == pytest.approx(2 / 3)
    loss.backward()
    assert torch.all(student.grad[1] == 0)  # the masked row gets no gradient
    assert teacher.grad is None  # the teacher is a target, not trained through this loss


def test_pseudo_label_loss_threshold_is_inclusive_and_can_mask_everything():
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # top probability exactly 0.75
    student = torch.zeros(1, 2)
    assert methods.pseudo_label_loss(student, teacher, 0.75)[0].item() == pytest.approx(math.log(2.0))
    loss, passed = methods.pseudo_label_loss(student, teacher, 0.76)
    assert loss.item() == 0.0 and passed.item() == 0.0


def test_domain_loss_by_hand():
    logits = torch.tensor([0.0, 2.0, -1.0])  # first row source (label 0), the others target (label 1)
    sigmoid = [1 / (1 + math.exp(-x)) for x in (0.0, 2.0, -1.0)]
    expected = (-math.log(1 - sigmoid[0]) - math.log(sigmoid[1]) - math.log(sigmoid[2])) / 3
    assert methods.domain_loss(logits, num_source=1).item() == pytest.approx(expected, rel=1e-6)


def test_entropy_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # [0.5, 0.5] and [0.75, 0.25]
    expected = (math.log(2.0) + -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    assert methods.entropy_loss(logits).item() == pytest.approx(expected, rel=1e-6)


def test_kl_divergence_by_hand():
    # p = softmax([ln 3, 0]) = [0.75, 0.25] (held fixed), q = softmax([0, 0]) = [0.5, 0.5]; row 2: p = q
    target = torch.tensor([[math.log(3.0), 0.0], [1.0, 2.0]], requires_grad=True)
    logits = torch.tensor([[0.0, 0.0], [1.0, 2.0]], requires_grad=True)
    expected = (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5) + 0.0) / 2
    loss = methods.kl_divergence(target, logits)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert target.grad is None  # p is the target of the consistency, not trained through it
    # d KL / d logits = (q - p) / rows: row 0 [0.5 - 0.75, 0.5 - 0.25] / 2, row 2 zero
    assert torch.allclose(logits.grad, torch.tensor([[-0.125, 0.125], [0.0, 0.0]]), atol=1e-6)


def test_adversarial_perturbation_finds_the_only_direction_that_matters():
    # logits = [3 * x0, 0]: only the first input coordinate moves the prediction, so the virtual adversarial
    # direction of every image is +-e0, whatever random direction the power iteration starts from
    classifier = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    images = torch.tensor([[0.2, 1.0, -1.0], [-0.5, 0.3, 0.7], [0.0, 0.0, 0.0]])
    perturbation = methods.adversarial_perturbation(
        classifier, images, epsilon=2.0, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(perturbation.abs(), torch.tensor([[2.0, 0.0, 0.0]] * 3), atol=1e-3)
    assert not perturbation.requires_grad and classifier.weight.grad is None  # the model is not trained by it
    # it changes the prediction more than a random direction of the same length
    random_direction = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    random_direction = 2.0 * random_direction / random_direction.norm(dim=1, keepdim=True)
    clean = classifier(images)
    assert methods.kl_divergence(clean, classifier(images + perturbation)) > methods.kl_divergence(
        clean, classifier(images + random_direction)
    )


def test_ema_update_by_hand():
    student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    teacher = methods.make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in teacher.parameters():
            p.fill_(1.0)
        for p in student.parameters():
            p.fill_(3.0)
        student[1].running_mean.fill_(7.0)
    methods.ema_update(teacher, student, decay=0.75)
    for p in teacher.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.75 * 1.0 + 0.25 * 3.0))
    assert torch.equal(teacher[1].running_mean, torch.full((2,), 7.0))  # buffers copied, not averaged
    assert torch.equal(student[0].weight, torch.full((2, 2), 3.0))  # the student is untouched


def test_fit_temperature_recovers_a_known_temperature():
    # labels drawn from softmax(z), logits given as 3 z: the NLL-optimal temperature is 3
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 10, generator=generator) * 2
    labels = torch.multinomial(z.softmax(dim=1), 1, generator=generator).squeeze(1)
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="zero examples"):
        fit_temperature(torch.empty(0, 10), torch.empty(0, dtype=torch.long))


def test_expected_calibration_error_by_hand():
    # two rows at confidence 0.9 (one right, one wrong) and two at 0.6 (both right), 10 bins:
    # 0.5 * |0.5 - 0.9| + 0.5 * |1.0 - 0.6| = 0.4
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 0, 1])
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.4, abs=1e-6)


def test_own_statistics_leave_the_running_statistics_alone():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(2)

        def forward(self, x):
            return type("Out", (), {"logits": self.norm(x)})()

    model = Tiny()
    model.norm.running_mean.fill_(100.0)
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    logits = logits_with_own_statistics(model, x, batch_size=2)
    assert torch.allclose(logits, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-3)  # batch-normalised
    assert torch.equal(model.norm.running_mean, torch.full((2,), 100.0))
    assert not model.training


def test_checkpoint_report_scores_a_saved_folder(tmp_path):
    """training.report.dann_checkpoint on the embedded subsets: accuracy, and a temperature from source data."""
    import json

    from pipelines.dann.modeling_dann import DANNConfig, DANNModel
    from training.report import dann_checkpoint

    torch.manual_seed(0)
    DANNModel(DANNConfig(temperature=3.0)).save_pretrained(tmp_path / "model")
    args = dann_checkpoint.parse_args(
        ["--pretrained", str(tmp_path / "model"), "--output_json", str(tmp_path / "score.json"), "--", "--augment"]
    )
    result = dann_checkpoint.main(args)
    assert json.loads((tmp_path / "score.json").read_text()) == result
    assert result["stored_temperature"] == 3.0
    assert 0.0 <= result["target_val_accuracy"] <= 1.0
    assert 0.05 <= result["fitted_temperature_on_source_validation"] <= 20.0
    assert "target_val_accuracy_nearest_resize" not in result  # the embedded subsets are already decoded
    with pytest.raises(FileNotFoundError, match="config.json"):
        dann_checkpoint.main(dann_checkpoint.parse_args(["--pretrained", str(tmp_path)]))
