"""Post-training int8 quantization and its size on disk."""
import copy
import warnings

import pytest
import torch
from torch import nn

import kdlab._deprecation
from kdlab import evaluate, models, pipeline, prune, quantize
from kdlab.prune.sparse_io import unpack_mask


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_quantize_int8_keeps_predictions_zeros_and_warns_nothing(split, teacher):
    model = copy.deepcopy(teacher)
    prune.magnitude_prune(model, 0.8)
    before = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = quantize.quantize_int8(model)
        logits = evaluate.predict(q, split.x_test, device="cpu")
    assert _same_weights(model, before)                       # the float model is untouched
    assert type(model.layers[0]) is nn.Linear
    agree = (logits.argmax(1) == evaluate.predict(model, split.x_test).argmax(1)).float().mean()
    assert agree > 0.97
    w_float, w_int = model.layers[0].weight, q.layers[0].weight()
    assert torch.equal(w_int.int_repr() == 0, w_float == 0)     # pruned stays exactly zero
    scale = w_float.detach().abs().max() / 127.5
    assert w_int.q_scale() == pytest.approx(float(scale), rel=1e-5)


def test_quantized_size_dense_and_sparse(split):
    dense = models.create("lenet-300-100")
    n_weights = sum(w.numel() for w in prune.prunable_weights(dense).values())
    q = quantize.quantize_int8(dense)
    size = quantize.quantized_size_bytes(q)
    assert n_weights < size < 1.2 * n_weights               # about one byte per weight
    # unpruned: the bitmask would not pay off, so the sparse file is no bigger than dense int8
    assert quantize.quantized_size_bytes(q, sparse=True) <= size * 1.05
    pruned = copy.deepcopy(dense)
    prune.magnitude_prune(pruned, 0.9)
    qp = quantize.quantize_int8(pruned)
    sparse = quantize.quantized_size_bytes(qp, sparse=True)
    expected = n_weights / 8 + 0.1 * n_weights               # bitmask + int8 non-zeros
    assert 0.95 * expected < sparse < expected + 8_000        # + biases, scales, container


def test_sparse_int8_state_decodes_to_the_int8_weights():
    torch.manual_seed(0)
    model = models.MLP(64, (40,), 10)
    prune.magnitude_prune(model, 0.7)
    q = quantize.quantize_int8(model)
    state = quantize.sparse_int8_state(q)
    for name in ("layers.0", "layers.2"):
        entry, w = state[name], q.get_submodule(name).weight()
        shape = torch.Size(entry["shape"])
        flat = torch.zeros(shape.numel(), dtype=torch.int8)
        flat[unpack_mask(entry["bits"], shape.numel())] = entry["values"]
        assert torch.equal(flat.view(shape), w.int_repr())
        assert entry["scale"] == w.q_scale() and entry["zero_point"] == 0


def test_quantize_bad_input():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        quantize.quantize_int8("model")
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize.quantize_int8(nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="no quantized Linear"):
        quantize.quantized_size_bytes(models.create("mlp-student"))
    with pytest.raises(ValueError, match="sparse must be one of"):
        quantize.quantized_size_bytes(quantize.quantize_int8(models.create("mlp-student")), sparse="yes")


def test_quantized_linears_are_found_by_one_rule_for_counts_and_flops():
    model = models.create("mlp-student")
    q = quantize.quantize_int8(model)
    assert sorted(quantize.quantized_linears(q)) == ["layers.0", "layers.2"]
    assert quantize.quantized_linears(model) == {}
    x = torch.zeros(3, 64)
    assert evaluate.count_parameters(q) == evaluate.count_parameters(model)
    assert evaluate.flops(q, x) == evaluate.flops(model, x)


def test_the_old_home_in_pipeline_still_works_with_a_warning():
    model = models.create("mlp-student")
    with pytest.warns(kdlab._deprecation.CATEGORY, match="kdlab.quantize.quantize_int8"):
        old = pipeline.quantize_int8
    assert old is quantize.quantize_int8
    with pytest.warns(kdlab._deprecation.CATEGORY, match="kdlab.quantize.quantized_size_bytes"):
        from kdlab.pipeline import quantized_size_bytes
    assert quantized_size_bytes(old(model)) == quantize.quantized_size_bytes(quantize.quantize_int8(model))
