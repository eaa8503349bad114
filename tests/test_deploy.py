import pytest
import torch

from kdlab import deploy, models


def test_export_roundtrip_any_batch(tmp_path):
    model = models.create("cnn-student", input_shape=(1, 8, 8)).eval()
    path = deploy.export_model(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.pt2")
    loaded = deploy.load_exported(path).eval()
    assert not loaded.training and loaded.train().training
    for batch in (1, 7):
        x = torch.randn(batch, 1, 8, 8)
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_export_restores_training_mode(tmp_path):
    model = models.create("mlp-teacher")
    model.train()
    deploy.export_model(model, torch.zeros(3, 64), tmp_path / "m.pt2")
    assert model.training


def test_export_and_load_reject_bad_input(tmp_path):
    with pytest.raises(TypeError, match="model"):
        deploy.export_model("not a model", torch.zeros(1, 64), tmp_path / "m.pt2")
    with pytest.raises(TypeError, match="example_input"):
        deploy.export_model(models.create("mlp-tiny"), [1, 2], tmp_path / "m.pt2")
    with pytest.raises(ValueError, match="path"):
        deploy.load_exported(tmp_path / "missing.pt2")


def test_prune_to_latency_generous_budget_keeps_model():
    model = models.create("mlp-student")
    search = deploy.prune_to_latency(model, torch.zeros(8, 64), 1e4, repeats=3, warmup=1)
    assert search.met and search.amount == 0.0 and len(search.trials) == 1
    assert search.model.layers[0].out_features == 32


def test_prune_to_latency_impossible_budget_reports_not_met():
    model = models.create("mlp-student")
    search = deploy.prune_to_latency(model, torch.zeros(8, 64), 1e-9, amounts=(0.0, 0.5),
                                     repeats=3, warmup=1)
    assert not search.met
    assert [a for a, _ in search.trials] == [0.0, 0.5]
    assert search.model.layers[0].out_features == 16


def test_prune_to_latency_picks_first_amount_that_fits(monkeypatch):
    # Fake timings (ms = channels left in the first layer) make the choice exact.
    monkeypatch.setattr(deploy, "latency", lambda m, x, **kw: float(m.layers[0].out_features))
    model = models.create("mlp-teacher")
    search = deploy.prune_to_latency(model, torch.zeros(2, 64), 300.0)
    assert search.met and search.amount == 0.5 and search.latency_ms == 256.0
    assert [a for a, _ in search.trials] == [0.0, 0.125, 0.25, 0.375, 0.5]


def test_prune_to_latency_min_statistic_reads_the_fastest_sample(monkeypatch):
    # Fake samples: a slow outlier on top of ms = channels left in the first layer;
    # the median sees the outliers, the minimum does not.
    def samples(m, x, **kw):
        ms = float(m.layers[0].out_features)
        return [ms, 10 * ms, 10 * ms]

    monkeypatch.setattr(deploy, "latency_samples", samples)
    monkeypatch.setattr(deploy, "latency", lambda m, x, **kw: sorted(samples(m, x))[1])
    model = models.create("mlp-teacher")
    by_min = deploy.prune_to_latency(model, torch.zeros(2, 64), 300.0, statistic="min")
    assert by_min.met and by_min.amount == 0.5 and by_min.latency_ms == 256.0
    by_median = deploy.prune_to_latency(model, torch.zeros(2, 64), 300.0)
    assert not by_median.met and by_median.latency_ms == 640.0  # 10x the 64 channels left at 0.875


def test_prune_to_latency_rejects_bad_arguments():
    model = models.create("mlp-student")
    with pytest.raises(ValueError, match="budget_ms"):
        deploy.prune_to_latency(model, torch.zeros(2, 64), 0.0)
    with pytest.raises(ValueError, match="amounts"):
        deploy.prune_to_latency(model, torch.zeros(2, 64), 1.0, amounts=(0.5, 1.0))
    with pytest.raises(ValueError, match="amounts"):
        deploy.prune_to_latency(model, torch.zeros(2, 64), 1.0, amounts=())
    with pytest.raises(ValueError, match="statistic"):
        deploy.prune_to_latency(model, torch.zeros(2, 64), 1.0, statistic="mean")
