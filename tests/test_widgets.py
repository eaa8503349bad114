import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from kdlab.course import widgets  # noqa: E402


def test_entropy_limits():
    assert widgets.entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0
    assert widgets.entropy(torch.full((4,), 0.25)).item() == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_temperature_explorer_readout_changes_with_the_slider(capsys):
    w = widgets.temperature_explorer(torch.tensor([5.0, 2.0, -1.0]), labels="abc")
    slider = w.children[0]
    w.update()
    low = capsys.readouterr().out
    slider.value = 20.0
    w.update()
    high = capsys.readouterr().out
    assert "T = 1.00" in low and "T = 20.00" in high
    assert float(low.split("entropy = ")[1].split()[0]) < float(high.split("entropy = ")[1].split()[0])


def test_curve_explorer(capsys):
    w = widgets.curve_explorer([0.0, 0.5, 0.9], {"acc": [0.9, 0.8, 0.5]}, xlabel="sparsity", ylabel="accuracy")
    w.children[0].value = 2
    w.update()
    assert "sparsity = 0.9: acc 0.5000" in capsys.readouterr().out


def test_bad_widget_input():
    with pytest.raises(ValueError, match="at least 2 classes"):
        widgets.temperature_explorer(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="curve 'a' has 1 values for 2 xs"):
        widgets.curve_explorer([0, 1], {"a": [1]}, xlabel="x", ylabel="y")
