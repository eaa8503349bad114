"""The per-layer sensitivity scan and its plot."""
import pytest

from kdlab import models, prune, train


def test_sensitivity_scan(split):
    model = models.create("mlp-student")
    train.fit(model, split, epochs=3, lr=3e-3)
    scan = prune.sensitivity_scan(model, split.test, [0.0, 0.5, 0.99])
    assert list(scan.accuracy) == ["layers.0", "layers.2"]
    for acc in scan.accuracy.values():
        assert acc[0] == pytest.approx(scan.baseline)
        assert acc[2] < scan.baseline
    ax = prune.plot_sensitivity(scan)
    assert len(ax.get_lines()) == 3
    import matplotlib.pyplot as plt
    plt.close("all")
    with pytest.raises(ValueError, match="amounts"):
        prune.sensitivity_scan(model, split.test, [0.5, 1.2])


def test_sensitivity_scan_takes_layers_by_keyword(split):
    import kdlab._deprecation

    model = models.create("mlp-student")
    scan = prune.sensitivity_scan(model, split.test, [0.5], layers=["layers.2"])
    assert list(scan.accuracy) == ["layers.2"]
    with pytest.warns(kdlab._deprecation.CATEGORY, match=r"passing layers to .*sensitivity_scan by position"):
        old = prune.sensitivity_scan(model, split.test, [0.5], ["layers.2"])
    assert list(old.accuracy) == ["layers.2"]
