"""The three KD + pruning orders, and int8 quantization with its size on disk."""
import copy
import warnings

import pytest
import torch
from torch import nn

from kdlab import data, models, pipeline, prune, train
from kdlab.prune.sparse_io import unpack_mask

STEPS_PER_EPOCH = 15  # 898 training digits in batches of 64


@pytest.fixture(scope="module")
def split():
    return data.load_digits()


@pytest.fixture(scope="module")
def teacher(split):
    torch.manual_seed(1)
    t = models.MLP(64, (64,), 10)
    train.fit(t, split, epochs=5, lr=3e-3, progress=False)
    return t.eval()


def student(seed=0, hidden=(32,)):
    torch.manual_seed(seed)
    return models.MLP(64, hidden, 10)


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# --------------------------------------------------------------------------- distill_then_prune

def test_distill_then_prune_stages_sparsity_and_cost(split, teacher):
    before = copy.deepcopy(teacher)
    s, h = pipeline.distill_then_prune(teacher, student(), split, amount=0.75, distill_epochs=2,
                                       finetune_epochs=2, eval_data=split.test, lr=1e-2,
                                       progress=False)
    assert h["stage"] == ["distill", "distill", "finetune", "finetune"]
    assert h["epoch"] == [1, 2, 3, 4]
    assert h["sparsity"][:2] == [0.0, 0.0]
    assert h.final["sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert h.steps == 4 * STEPS_PER_EPOCH
    assert h.seconds >= sum(h["seconds"]) > 0
    assert h.final["eval_acc"] > 0.5            # it learned something from a 5-epoch teacher
    assert _same_weights(teacher, before)       # the teacher is never trained or pruned


def test_distill_then_prune_without_finetune_and_plain_finetune(split, teacher):
    s, h = pipeline.distill_then_prune(teacher, student(), split, amount=0.5, distill_epochs=1,
                                       finetune_epochs=0, progress=False)
    assert h.steps == STEPS_PER_EPOCH and h.final["stage"] == "prune"
    assert prune.sparsity(s)["global"] == pytest.approx(0.5, abs=1e-3)
    # plain cross-entropy fine-tuning gives a different model than KD fine-tuning
    a, _ = pipeline.distill_then_prune(teacher, student(), split, amount=0.5, distill_epochs=1,
                                       finetune_epochs=1, finetune_with_teacher=False, progress=False)
    b, _ = pipeline.distill_then_prune(teacher, student(), split, amount=0.5, distill_epochs=1,
                                       finetune_epochs=1, progress=False)
    assert not _same_weights(a, b)


def test_teacher_none_is_plain_cross_entropy(split):
    via_pipeline, _ = pipeline.distill_then_prune(None, student(), split, amount=0.6, distill_epochs=2,
                                                  finetune_epochs=1, progress=False)
    direct = student()
    train.fit(direct, split, epochs=2, progress=False)
    masks = prune.magnitude_prune(direct, 0.6)
    train.fit(direct, split, epochs=1, callbacks=[masks.callback()], progress=False)
    assert _same_weights(via_pipeline, direct)


# --------------------------------------------------------------------------- prune_while_distilling

def test_prune_while_distilling_tightens_masks_on_the_schedule(split, teacher):
    agp = prune.AGP(0.0, 0.8, start=0, end=2 * STEPS_PER_EPOCH, frequency=5)
    s, h = pipeline.prune_while_distilling(teacher, student(), split, schedule=agp, epochs=3,
                                           progress=False)
    sp = h["sparsity"]
    assert 0.0 < sp[0] < sp[1] <= sp[2]
    assert sp[2] == pytest.approx(0.8, abs=1e-3)
    assert h.steps == 3 * STEPS_PER_EPOCH and set(h["stage"]) == {"prune+distill"}


def test_prune_while_distilling_refuses_unreachable_or_used_schedule(split, teacher):
    late = prune.AGP(0.0, 0.9, start=0, end=10 * STEPS_PER_EPOCH)
    with pytest.raises(ValueError, match="schedule reaches sparsity 0.9000 only after"):
        pipeline.prune_while_distilling(teacher, student(), split, schedule=late, epochs=2)
    used = prune.OneShot(0.5)
    used.update(student(), 0)
    with pytest.raises(ValueError, match="fresh schedule"):
        pipeline.prune_while_distilling(teacher, student(), split, schedule=used, epochs=1)
    with pytest.raises(TypeError, match="kdlab.prune.Schedule"):
        pipeline.prune_while_distilling(teacher, student(), split, schedule=0.5, epochs=1)


# --------------------------------------------------------------------------- iterative_prune_distill

def test_iterative_rounds_reach_the_total_and_keep_pruned_weights(split, teacher):
    model = copy.deepcopy(teacher)
    seen = []
    pruned_once = {}

    def recording_prune(m, amount, previous=None):
        masks = prune.magnitude_prune(m, amount, previous=previous)
        for name in masks:
            if name in pruned_once:  # a weight pruned in an earlier round stays pruned
                assert not (masks[name] & ~pruned_once[name]).any()
            pruned_once[name] = masks[name].clone()
        seen.append(amount)
        return masks

    m, h = pipeline.iterative_prune_distill(model, model, split, rounds=3, amount_per_round=0.3,
                                            epochs_per_round=1, prune_fn=recording_prune,
                                            progress=False)
    assert seen == pytest.approx([0.3, 0.6, 0.9])
    assert h["stage"] == ["round 1", "round 2", "round 3"]
    assert h["sparsity"] == pytest.approx([0.3, 0.6, 0.9], abs=1e-3)
    assert h.steps == 3 * STEPS_PER_EPOCH
    assert prune.sparsity(teacher)["global"] == 0.0   # the teacher was copied, not pruned


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rounds=0, amount_per_round=0.3), ValueError, "rounds must be an integer >= 1"),
    (dict(rounds=1.5, amount_per_round=0.3), TypeError, "rounds must be an integer"),
    (dict(rounds=3, amount_per_round=0.4), ValueError, r"rounds \* amount_per_round must be <= 1"),
    (dict(rounds=2, amount_per_round=0.0), ValueError, "amount_per_round must be > 0"),
    (dict(rounds=2, amount_per_round=1.5), ValueError, r"amount_per_round must be in \[0, 1\]"),
    (dict(rounds=2, amount_per_round=0.3, epochs_per_round=0), ValueError, "epochs_per_round"),
    (dict(rounds=2, amount_per_round=0.3, prune_fn="magnitude"), TypeError, "prune_fn must be callable"),
    (dict(rounds=2, amount_per_round=0.3, callbacks=[]), ValueError, "callbacks is set by the pipeline"),
])
def test_iterative_bad_input(split, teacher, kwargs, error, match):
    with pytest.raises(error, match=match):
        pipeline.iterative_prune_distill(teacher, student(), split, **kwargs)


# --------------------------------------------------------------------------- shared checks

@pytest.mark.parametrize("amount", [-0.1, 1.1, float("nan")])
def test_amount_outside_unit_interval(split, teacher, amount):
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\]"):
        pipeline.distill_then_prune(teacher, student(), split, amount=amount)


def test_mismatched_class_counts_and_types(split, teacher):
    wrong = models.MLP(64, (8,), 7)
    for call in (lambda: pipeline.distill_then_prune(teacher, wrong, split, amount=0.5),
                 lambda: pipeline.prune_while_distilling(teacher, wrong, split, schedule=prune.OneShot(0.5)),
                 lambda: pipeline.iterative_prune_distill(teacher, wrong, split, rounds=1,
                                                          amount_per_round=0.5)):
        with pytest.raises(ValueError, match=r"same number of classes, got 10 \(teacher\) and 7"):
            call()
    with pytest.raises(TypeError, match="teacher must be an nn.Module or None"):
        pipeline.distill_then_prune("teacher", student(), split, amount=0.5)
    with pytest.raises(TypeError, match="student must be an nn.Module"):
        pipeline.distill_then_prune(teacher, None, split, amount=0.5)


def test_checks_run_before_any_training(split, teacher):
    s = student()
    before = copy.deepcopy(s)
    with pytest.raises(ValueError):
        pipeline.distill_then_prune(teacher, s, split, amount=0.5, distill_epochs=1, epochs=3)
    assert _same_weights(s, before)


# --------------------------------------------------------------------------- int8

def test_quantize_int8_keeps_predictions_zeros_and_warns_nothing(split, teacher):
    model = copy.deepcopy(teacher)
    prune.magnitude_prune(model, 0.8)
    before = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = pipeline.quantize_int8(model)
        logits = train.predict(q, split.x_test, device="cpu")
    assert _same_weights(model, before)                       # the float model is untouched
    assert type(model.layers[0]) is nn.Linear
    agree = (logits.argmax(1) == train.predict(model, split.x_test).argmax(1)).float().mean()
    assert agree > 0.97
    w_float, w_int = model.layers[0].weight, q.layers[0].weight()
    assert torch.equal(w_int.int_repr() == 0, w_float == 0)     # pruned stays exactly zero
    scale = w_float.detach().abs().max() / 127.5
    assert w_int.q_scale() == pytest.approx(float(scale), rel=1e-5)


def test_quantized_size_dense_and_sparse(split):
    dense = models.create("lenet-300-100")
    n_weights = sum(w.numel() for w in prune.prunable_weights(dense).values())
    q = pipeline.quantize_int8(dense)
    size = pipeline.quantized_size_bytes(q)
    assert n_weights < size < 1.2 * n_weights               # about one byte per weight
    # unpruned: the bitmask would not pay off, so the sparse file is no bigger than dense int8
    assert pipeline.quantized_size_bytes(q, sparse=True) <= size * 1.05
    pruned = copy.deepcopy(dense)
    prune.magnitude_prune(pruned, 0.9)
    qp = pipeline.quantize_int8(pruned)
    sparse = pipeline.quantized_size_bytes(qp, sparse=True)
    expected = n_weights / 8 + 0.1 * n_weights               # bitmask + int8 non-zeros
    assert 0.95 * expected < sparse < expected + 8_000        # + biases, scales, container


def test_sparse_int8_state_decodes_to_the_int8_weights():
    torch.manual_seed(0)
    model = models.MLP(64, (40,), 10)
    prune.magnitude_prune(model, 0.7)
    q = pipeline.quantize_int8(model)
    state = pipeline.sparse_int8_state(q)
    for name in ("layers.0", "layers.2"):
        entry, w = state[name], q.get_submodule(name).weight()
        shape = torch.Size(entry["shape"])
        flat = torch.zeros(shape.numel(), dtype=torch.int8)
        flat[unpack_mask(entry["bits"], shape.numel())] = entry["values"]
        assert torch.equal(flat.view(shape), w.int_repr())
        assert entry["scale"] == w.q_scale() and entry["zero_point"] == 0


def test_quantize_bad_input():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        pipeline.quantize_int8("model")
    with pytest.raises(ValueError, match="no nn.Linear"):
        pipeline.quantize_int8(nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="no dynamically quantized Linear"):
        pipeline.quantized_size_bytes(models.create("mlp-student"))
    with pytest.raises(ValueError, match="sparse must be one of"):
        pipeline.quantized_size_bytes(pipeline.quantize_int8(models.create("mlp-student")), sparse="yes")
