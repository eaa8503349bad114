"""Hinton et al.'s omitted-class experiment: kdlab.distill.omitted."""
import pytest
import torch
from torch import nn

from kdlab import data, models, train
from kdlab.distill import OmittedClassRun, bias_shift_for_share, omitted_class_run, without_class


def test_bias_shift_makes_the_class_win_on_the_share():
    torch.manual_seed(0)
    logits = torch.randn(200, 5)
    for share in (0.05, 0.1, 0.5, 1.0):
        b = bias_shift_for_share(logits, 2, share)
        shifted = logits.clone()
        shifted[:, 2] += b
        assert (shifted.argmax(1) == 2).float().mean().item() == pytest.approx(share, abs=1 / 200)
        # a smaller shift wins fewer rows: b is the smallest such shift
        shifted[:, 2] -= 2e-4
        assert (shifted.argmax(1) == 2).sum() < round(share * 200)


def test_bias_shift_is_negative_when_the_class_already_wins_too_often():
    logits = torch.tensor([[0.0, 5.0], [0.0, 4.0], [0.0, 3.0], [0.0, 2.0]])
    assert bias_shift_for_share(logits, 1, 0.25) < 0


@pytest.mark.parametrize("kwargs, match", [
    ({"logits": torch.zeros(3), "cls": 0, "share": 0.1}, "logits must be"),
    ({"logits": torch.zeros(3, 4), "cls": 4, "share": 0.1}, r"cls must be a class index in \[0, 4\), got 4"),
    ({"logits": torch.zeros(3, 4), "cls": 1, "share": 0.0}, "share must be in"),
    ({"logits": torch.zeros(3, 4), "cls": 1, "share": 1.5}, "share"),
])
def test_bias_shift_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bias_shift_for_share(**kwargs)


def test_without_class():
    x, y = torch.arange(6.0)[:, None], torch.tensor([0, 1, 2, 1, 0, 2])
    xs, ys = without_class((x, y), 1)
    assert ys.tolist() == [0, 2, 0, 2] and xs.flatten().tolist() == [0.0, 2.0, 4.0, 5.0]
    with pytest.raises(ValueError, match="removed must be a class present in the labels, got 7"):
        without_class((x, y), 7)


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(flat=True)


def test_omitted_class_run_hard_labels_never_predict_the_class(digits):
    train.seed_everything(0)
    student = models.MLP(64, (32,), 10)
    run = omitted_class_run(student, None, digits, removed=3, share=0.1, epochs=3, lr=3e-3, seed=0, progress=False)
    assert isinstance(run, OmittedClassRun)
    assert run.recognised == 0.0 and run.shift > 0
    assert run.recognised_shifted > 0 and 0 <= run.others_shifted <= run.others <= 1


def test_omitted_class_run_soft_targets(digits):
    teacher = models.pretrained("mlp-teacher", data=digits)
    train.seed_everything(0)
    run = omitted_class_run(models.MLP(64, (64,), 10), teacher, digits, removed=3, share=0.1, epochs=40,
                            temperature=20.0, lr=3e-3, batch_size=128, seed=0, progress=False)
    # the teacher's soft targets teach a class the student never saw, before and after the shift
    assert run.recognised > 0.3 and run.recognised_shifted > run.recognised


def test_omitted_class_run_bad_input(digits):
    teacher = nn.Linear(64, 10)
    with pytest.raises(ValueError, match="temperature is needed with a teacher"):
        omitted_class_run(models.MLP(64, (8,), 10), teacher, digits, removed=3, share=0.1, epochs=1)
    with pytest.raises(ValueError, match="with teacher=None it must be None"):
        omitted_class_run(models.MLP(64, (8,), 10), None, digits, removed=3, share=0.1, epochs=1, temperature=4.0)
    with pytest.raises(ValueError, match="nn.Linear layer with a bias"):
        omitted_class_run(nn.Sequential(nn.Linear(64, 10, bias=False)), None, digits, removed=3, share=0.1, epochs=1)
    with pytest.raises(TypeError, match="student must be an nn.Module"):
        omitted_class_run("mlp", None, digits, removed=3, share=0.1, epochs=1)
