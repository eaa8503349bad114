"""Prune, fine-tune and evaluate; the three KD + pruning orders."""
import copy

import pytest
import torch

import kdlab._deprecation
from kdlab import evaluate, models, pipeline, prune, train

STEPS_PER_EPOCH = 15  # 898 training digits in batches of 64


def student(seed=0, hidden=(32,)):
    torch.manual_seed(seed)
    return models.MLP(64, hidden, 10)


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# --------------------------------------------------------------------------- prune, fine-tune, evaluate

def test_prune_finetune_evaluate_is_prune_a_copy_then_fit_under_the_masks(split, teacher):
    run = pipeline.prune_finetune_evaluate(teacher, split, amount=0.8, epochs=2, lr=1e-3, seed=3, progress=False)
    assert prune.sparsity(teacher)["global"] == 0.0            # the trained model is left as it was
    by_hand = copy.deepcopy(teacher)
    masks = prune.magnitude_prune(by_hand, 0.8)
    assert run.accuracy_pruned == evaluate.accuracy(by_hand, split.test)
    train.fit(by_hand, split.train, epochs=2, lr=1e-3, seed=3, callbacks=[masks.callback()], progress=False)
    assert _same_weights(run.model, by_hand) and run.accuracy == evaluate.accuracy(by_hand, split.test)
    assert run.masks.sparsity == pytest.approx(0.8, abs=1e-3) and run.history.steps == 2 * STEPS_PER_EPOCH
    assert run.history["sparsity"] == pytest.approx([0.8, 0.8], abs=1e-3)


def test_prune_finetune_evaluate_distils_from_a_teacher_and_takes_a_smaller_model(split, teacher):
    run = pipeline.prune_finetune_evaluate(teacher, split, amount=0.5, epochs=1, teacher=teacher,
                                           temperature=2.0, alpha=0.5, seed=1, progress=False)
    by_hand, _ = pipeline.iterative_prune_distill(copy.deepcopy(teacher), split, teacher=teacher, rounds=1,
                                                  amount_per_round=0.5, epochs_per_round=1, temperature=2.0,
                                                  alpha=0.5, seed=1, progress=False)
    assert _same_weights(run.model, by_hand)
    x = split.x_test[:1]
    smaller = pipeline.prune_finetune_evaluate(
        teacher, split, amount=0.5, epochs=1, prune_fn=lambda m, a: prune.structured_prune(m, a, x), progress=False)
    assert smaller.masks is None and smaller.model.layers[0].out_features == 32
    free = pipeline.prune_finetune_evaluate(teacher, split, amount=0.9, epochs=1, keep_masks=False, progress=False)
    assert prune.sparsity(free.model)["global"] < 0.9      # without the masks the pruned weights come back


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(amount=1.5), ValueError, r"amount must be in \[0, 1\]"),
    (dict(epochs=-1), ValueError, "epochs must be an integer >= 0"),
    (dict(prune_fn=0.5), TypeError, "prune_fn must be callable"),
    (dict(prune_fn=lambda m, a: 0.5), TypeError, "prune_fn must return PruningMasks or a pruned nn.Module"),
    (dict(data=(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long))), TypeError, "test is needed"),
    (dict(teacher=models.MLP(64, (8,), 7)), ValueError, r"same number of classes, got 7 \(teacher\) and 10"),
    (dict(seed=0, callbacks=[]), ValueError, "callbacks is set by the pipeline"),
])
def test_prune_finetune_evaluate_bad_input(split, teacher, kwargs, error, match):
    args = {"data": split, "amount": 0.5, "epochs": 1, **kwargs}
    with pytest.raises(error, match=match):
        pipeline.prune_finetune_evaluate(teacher, **args)


def test_the_old_argument_order_still_works_with_a_warning(split, teacher):
    with pytest.warns(kdlab._deprecation.CATEGORY, match=r"distill_then_prune\(model, data, teacher=teacher"):
        old, _ = pipeline.distill_then_prune(teacher, student(), split, amount=0.5, distill_epochs=1,
                                             finetune_epochs=0, progress=False)
    new, _ = pipeline.distill_then_prune(student(), split, teacher=teacher, amount=0.5, distill_epochs=1,
                                         finetune_epochs=0, progress=False)
    assert _same_weights(old, new)
    with pytest.warns(kdlab._deprecation.CATEGORY, match="iterative_prune_distill"):
        pipeline.iterative_prune_distill(None, student(), split, rounds=1, amount_per_round=0.5,
                                         epochs_per_round=1, progress=False)


# --------------------------------------------------------------------------- distill_then_prune

def test_distill_then_prune_stages_sparsity_and_cost(split, teacher):
    before = copy.deepcopy(teacher)
    s, h = pipeline.distill_then_prune(student(), split, teacher=teacher, amount=0.75, distill_epochs=2,
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
    s, h = pipeline.distill_then_prune(student(), split, teacher=teacher, amount=0.5, distill_epochs=1,
                                       finetune_epochs=0, progress=False)
    assert h.steps == STEPS_PER_EPOCH and h.final["stage"] == "prune"
    assert prune.sparsity(s)["global"] == pytest.approx(0.5, abs=1e-3)
    # plain cross-entropy fine-tuning gives a different model than KD fine-tuning
    a, _ = pipeline.distill_then_prune(student(), split, teacher=teacher, amount=0.5, distill_epochs=1,
                                       finetune_epochs=1, finetune_with_teacher=False, progress=False)
    b, _ = pipeline.distill_then_prune(student(), split, teacher=teacher, amount=0.5, distill_epochs=1,
                                       finetune_epochs=1, progress=False)
    assert not _same_weights(a, b)


def test_teacher_none_is_plain_cross_entropy(split):
    via_pipeline, _ = pipeline.distill_then_prune(student(), split, teacher=None, amount=0.6, distill_epochs=2,
                                                  finetune_epochs=1, progress=False)
    direct = student()
    train.fit(direct, split, epochs=2, progress=False)
    masks = prune.magnitude_prune(direct, 0.6)
    train.fit(direct, split, epochs=1, callbacks=[masks.callback()], progress=False)
    assert _same_weights(via_pipeline, direct)


# --------------------------------------------------------------------------- prune_while_distilling

def test_prune_while_distilling_tightens_masks_on_the_schedule(split, teacher):
    agp = prune.AGP(0.0, 0.8, start=0, end=2 * STEPS_PER_EPOCH, frequency=5)
    s, h = pipeline.prune_while_distilling(student(), split, teacher=teacher, schedule=agp, epochs=3,
                                           progress=False)
    sp = h["sparsity"]
    assert 0.0 < sp[0] < sp[1] <= sp[2]
    assert sp[2] == pytest.approx(0.8, abs=1e-3)
    assert h.steps == 3 * STEPS_PER_EPOCH and set(h["stage"]) == {"prune+distill"}


def test_prune_while_distilling_refuses_unreachable_or_used_schedule(split, teacher):
    late = prune.AGP(0.0, 0.9, start=0, end=10 * STEPS_PER_EPOCH)
    with pytest.raises(ValueError, match="schedule reaches sparsity 0.9000 only after"):
        pipeline.prune_while_distilling(student(), split, teacher=teacher, schedule=late, epochs=2)
    used = prune.OneShot(0.5)
    used.update(student(), 0)
    with pytest.raises(ValueError, match="fresh schedule"):
        pipeline.prune_while_distilling(student(), split, teacher=teacher, schedule=used, epochs=1)
    with pytest.raises(TypeError, match="kdlab.prune.Schedule"):
        pipeline.prune_while_distilling(student(), split, teacher=teacher, schedule=0.5, epochs=1)


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

    m, h = pipeline.iterative_prune_distill(model, split, teacher=model, rounds=3, amount_per_round=0.3,
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
        pipeline.iterative_prune_distill(student(), split, teacher=teacher, **kwargs)


# --------------------------------------------------------------------------- shared checks

@pytest.mark.parametrize("amount", [-0.1, 1.1, float("nan")])
def test_amount_outside_unit_interval(split, teacher, amount):
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\]"):
        pipeline.distill_then_prune(student(), split, teacher=teacher, amount=amount)


def test_mismatched_class_counts_and_types(split, teacher):
    wrong = models.MLP(64, (8,), 7)
    for call in (lambda: pipeline.distill_then_prune(wrong, split, teacher=teacher, amount=0.5),
                 lambda: pipeline.prune_while_distilling(wrong, split, teacher=teacher, schedule=prune.OneShot(0.5)),
                 lambda: pipeline.iterative_prune_distill(wrong, split, teacher=teacher, rounds=1,
                                                          amount_per_round=0.5)):
        with pytest.raises(ValueError, match=r"same number of classes, got 10 \(teacher\) and 7"):
            call()
    with pytest.raises(TypeError, match="teacher must be an nn.Module or None"):
        pipeline.distill_then_prune(student(), split, teacher="teacher", amount=0.5)
    with pytest.raises(TypeError, match="student must be an nn.Module"):
        pipeline.distill_then_prune(None, split, teacher=teacher, amount=0.5)


def test_checks_run_before_any_training(split, teacher):
    s = student()
    before = copy.deepcopy(s)
    with pytest.raises(ValueError):
        pipeline.distill_then_prune(s, split, teacher=teacher, amount=0.5, distill_epochs=1, epochs=3)
    assert _same_weights(s, before)
