import os

import pytest
import torch
from torch import nn

from kdlab import evaluate, models


def test_flops_of_linear_and_conv_equal_hand_count():
    mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    assert evaluate.flops(mlp, torch.zeros(4, 64)) == 2 * 4 * (64 * 32 + 32 * 10)
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert evaluate.flops(conv, torch.zeros(2, 3, 10, 10)) == 2 * 2 * 8 * 10 * 10 * 3 * 3 * 3
    assert evaluate.macs(conv, torch.zeros(2, 3, 10, 10)) == 2 * 8 * 10 * 10 * 3 * 3 * 3


def test_small_cnn_flops_hand_count():
    cnn = models.SmallCNN(channels=(4, 8))
    conv1 = 8 * 8 * 4 * 1 * 9
    conv2 = 4 * 4 * 8 * 4 * 9
    assert evaluate.flops(cnn, torch.zeros(1, 1, 8, 8)) == 2 * (conv1 + conv2 + 8 * 10)


def test_parameter_counts_and_nonzeros():
    model = nn.Linear(10, 5)
    assert evaluate.count_parameters(model) == 55
    with torch.no_grad():
        model.weight[:2] = 0
        model.bias.zero_()
    assert evaluate.count_parameters(model, nonzero=True) == 30


def test_model_size_bytes_equals_saved_file(tmp_path):
    model = models.create("lenet-300-100")
    # torch.save names the archive after the file; in memory it is "archive"
    path = tmp_path / "archive.pt"
    torch.save(model.state_dict(), path)
    assert evaluate.model_size_bytes(model) == os.path.getsize(path)


def test_latency_is_median_after_warmup(monkeypatch):
    model = models.create("mlp-student")
    samples = evaluate.latency_samples(model, torch.zeros(8, 64), warmup=2, repeats=7)
    assert len(samples) == 7 and all(s > 0 for s in samples)
    calls = []
    real = evaluate.latency_samples
    monkeypatch.setattr(evaluate, "latency_samples",
                        lambda *a, **k: calls.append(k) or [5.0, 1.0, 3.0, 100.0, 2.0])
    assert evaluate.latency(model, torch.zeros(1, 64), warmup=4, repeats=5) == 3.0
    assert calls[0]["warmup"] == 4 and calls[0]["repeats"] == 5
    monkeypatch.setattr(evaluate, "latency_samples", real)


def test_latency_excludes_slow_first_calls():
    import time

    class SlowStart(nn.Module):
        calls = 0

        def forward(self, x):
            SlowStart.calls += 1
            if SlowStart.calls <= 3:
                time.sleep(0.05)
            return x

    assert evaluate.latency(SlowStart(), torch.zeros(1), warmup=3, repeats=5) < 5.0


def test_classification_metrics_match_scikit_learn():
    from sklearn.metrics import f1_score, precision_score, recall_score

    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (200,), generator=gen)
    pred = torch.where(torch.rand(200, generator=gen) < 0.7, y, torch.randint(0, 5, (200,), generator=gen))
    pred[pred == 4] = 3  # class 4 never predicted: precision 0 by convention
    m = evaluate.classification_metrics(y, pred)
    assert m["accuracy"] == pytest.approx((y == pred).float().mean().item())
    assert m["precision"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0))
    assert m["recall"] == pytest.approx(recall_score(y, pred, average="macro", zero_division=0))
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    logits = torch.nn.functional.one_hot(pred, 5).float()
    assert evaluate.classification_metrics(y, logits) == m


def test_report_rows_table_and_plot(split):
    import matplotlib
    matplotlib.use("Agg")
    rep = evaluate.report({"tiny": models.create("mlp-tiny"), "student": models.create("mlp-student")},
                          split, measure_latency=False)
    assert list(rep.rows) == ["tiny", "student"]
    assert rep["tiny"]["params"] == 1210 and rep["student"]["mflops"] == pytest.approx(2 * (64 * 32 + 32 * 10) / 1e6)
    assert "latency_ms" not in rep.columns()
    text = str(rep)
    assert text.splitlines()[0].split()[:3] == ["model", "accuracy", "precision"]
    assert rep.to_markdown().count("\n") == 3
    ax = rep.plot(x="size_kb")
    assert ax.get_xlabel() == "size_kb"
    with_latency = evaluate.report({"tiny": models.create("mlp-tiny")}, split.test, repeats=3)
    assert with_latency["tiny"]["latency_ms"] > 0


@pytest.mark.parametrize("call, error, match", [
    (lambda m: evaluate.latency(m, torch.zeros(1, 64), repeats=0), ValueError, "repeats must be an integer >= 1, got 0"),
    (lambda m: evaluate.latency(m, torch.zeros(1, 64), warmup=-1), ValueError, "warmup must be an integer >= 0, got -1"),
    (lambda m: evaluate.flops(m, [1, 2]), TypeError, "example_input must be a tensor"),
    (lambda m: evaluate.classification_metrics([1, 2], [1]), ValueError, "same length"),
    (lambda m: evaluate.report({}, None), ValueError, "models must be a non-empty dict"),
])
def test_bad_evaluate_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(models.create("mlp-tiny"))


def test_mean_std_and_format():
    assert evaluate.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert evaluate.mean_std([5]) == (5.0, 0.0)
    assert evaluate.format_mean_std([0.9, 0.92]) == "0.9100 ± 0.0141 (n=2)"
    with pytest.raises(ValueError, match="at least one number"):
        evaluate.mean_std([])


def test_quantized_models_count_their_packed_weights_and_operations():
    """flop_counter counts 0 for quantized kernels and the packed int8 weights are not
    parameters; kdlab.evaluate counts both, so a report of an int8 model does not read 0."""
    from torch.utils.flop_counter import FlopCounterMode

    from kdlab import models, quantize

    model = models.create("lenet-300-100")
    with torch.no_grad():
        model.layers[0].weight[:, :10] = 0.0  # exact zeros stay zeros in int8 (symmetric, zero point 0)
    q = quantize.quantize_int8(model)
    x = torch.rand(5, 64)
    assert list(q.parameters()) == []
    assert evaluate.count_parameters(q) == evaluate.count_parameters(model) == 50_610
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    qlinears = [m for m in q.modules() if isinstance(m, QuantizedLinear)]
    assert len(qlinears) == 3
    int_weights = sum(int(torch.count_nonzero(m.weight().int_repr())) for m in qlinears)
    biases = sum(int(torch.count_nonzero(m.bias())) for m in qlinears)
    assert evaluate.count_parameters(q, nonzero=True) == int_weights + biases
    assert evaluate.count_parameters(q, nonzero=True) <= evaluate.count_parameters(model) - 300 * 10
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        q(x)
    assert counter.get_total_flops() == 0
    assert evaluate.flops(q, x) == evaluate.flops(model, x) == 2 * 5 * (64 * 300 + 300 * 100 + 100 * 10)
    assert not q._forward_hooks and all(not m._forward_hooks for m in q.modules())  # hooks removed


def test_mcnemar_exact_matches_an_independent_binomial_test():
    scipy_stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = int(torch.randint(1, 300, (1,), generator=gen))
        a = torch.rand(n, generator=gen) < 0.8
        b = torch.where(torch.rand(n, generator=gen) < 0.9, a, ~a)
        r = evaluate.mcnemar_exact(a, b)
        a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
        assert (r["a_only"], r["b_only"], r["n"]) == (a_only, b_only, n)
        assert r["difference"] == pytest.approx((a.float().mean() - b.float().mean()).item())
        expected = 1.0 if a_only + b_only == 0 else scipy_stats.binomtest(a_only, a_only + b_only, 0.5).pvalue
        assert r["p_value"] == pytest.approx(expected, rel=1e-9)


def test_mcnemar_exact_hand_values_and_validation():
    # 5 discordant pairs all one way: 2 * (1/2)^5
    assert evaluate.mcnemar_exact([1] * 5 + [0] * 3, [0] * 8)["p_value"] == pytest.approx(0.0625)
    # 1 against 9: 2 * (1 + 10) / 1024
    r = evaluate.mcnemar_exact([1] * 9 + [0] + [1] * 50, [0] * 9 + [1] + [1] * 50)
    assert (r["a_only"], r["b_only"]) == (9, 1) and r["p_value"] == pytest.approx(22 / 1024)
    assert evaluate.mcnemar_exact([1, 0, 1], [1, 0, 1])["p_value"] == 1.0
    with pytest.raises(ValueError):
        evaluate.mcnemar_exact([1, 0], [1, 0, 1])


def test_latency_interleaved_alternates_models(monkeypatch):
    order = []
    monkeypatch.setattr(evaluate, "latency_samples",
                        lambda model, x, **k: order.append((model, k["warmup"])) or [1.0] * k["repeats"])
    out = evaluate.latency_interleaved({"a": "A", "b": "B"}, torch.zeros(1), rounds=3, repeats=2, warmup=4)
    assert out == {"a": [1.0] * 6, "b": [1.0] * 6}
    assert order == [("A", 4), ("B", 4), ("A", 0), ("B", 0), ("A", 0), ("B", 0)]
    with pytest.raises(ValueError):
        evaluate.latency_interleaved({}, torch.zeros(1))


def test_accuracy_is_one_formula_for_models_and_for_labels(split):
    torch.manual_seed(0)
    model = models.create("mlp-tiny")
    predicted = evaluate.predict(model, split).argmax(1)
    x, y = split.test
    assert evaluate.accuracy(model, split) == (predicted == y).float().mean().item()
    assert evaluate.classification_metrics(y, predicted)["accuracy"] == evaluate.accuracy(model, (x, y))
    report = evaluate.report({"m": model}, split, measure_latency=False)
    assert report["m"]["accuracy"] == evaluate.accuracy(model, split)


def test_the_old_name_compare_still_works_with_a_warning(split):
    import kdlab._deprecation

    with pytest.warns(kdlab._deprecation.CATEGORY, match="kdlab.evaluate.compare .*use kdlab.evaluate.report"):
        old = evaluate.compare
    assert old is evaluate.report
