"""Bad input gets a clear error that names the argument, the value and what is
allowed, raised before any work is done (not a raw Python or torch error, and
never a silent wrong answer)."""
import pytest
import torch

from kdlab import data, distill, evaluate, models, prune, train


def test_unlabelled_targets_are_not_scored():
    with pytest.raises(ValueError, match=r"y_true must hold class indices >= 0, got -1 \(-1 marks an unlabelled"):
        evaluate.classification_metrics([0, -1], [0, 1])


def test_float_labels_are_refused():
    with pytest.raises(TypeError, match="y_true must hold integer class indices, got torch.float32 values such as 1.7"):
        evaluate.classification_metrics([0.0, 1.7], [0, 1])
    with pytest.raises(TypeError, match="y_pred must hold integer class indices"):
        evaluate.classification_metrics([0, 1], [0.0, 0.6])


def test_labels_beyond_num_classes_are_refused():
    with pytest.raises(ValueError, match=r"y_pred must hold class indices < 3 \(the number of classes\), got 5"):
        evaluate.classification_metrics([0, 1], [0, 5], num_classes=3)


def test_metrics_still_take_logits():
    assert evaluate.classification_metrics([0, 1], torch.tensor([[2.0, 1.0], [0.0, 3.0]]))["accuracy"] == 1.0


def _mlp():
    return models.MLP(in_features=4, hidden=(8,), num_classes=3)


@pytest.mark.parametrize("y, match", [
    (torch.tensor([0.0, 1.0, 2.0, 1.5]), "integer class indices, got torch.float32"),
    (torch.tensor([0, 1, 2, 3]), "class indices < 3, the model's number of outputs; got 3"),
    (torch.tensor([0, 1, -1, 2]), "class indices >= 0, got -1"),
])
def test_fit_checks_targets_before_training(y, match):
    model = _mlp()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises((TypeError, ValueError), match=match):
        train.fit(model, (torch.randn(4, 4), y), epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fit_still_takes_class_probabilities():
    probs = torch.softmax(torch.randn(4, 3), 1)
    train.fit(_mlp(), (torch.randn(4, 4), probs), epochs=1, progress=False)


def test_callbacks_are_checked_before_the_first_step():
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be a Callback object or a function of the TrainState, got 1"):
        train.fit(_mlp(), (torch.randn(4, 4), torch.tensor([0, 1, 2, 0])), epochs=1, callbacks=[1])


@pytest.mark.parametrize("call", [
    lambda m, x, y: evaluate.accuracy(m, x),
    lambda m, x, y: evaluate.report({"m": m}, x, measure_latency=False),
])
def test_inputs_without_labels_say_what_is_needed(call):
    x = torch.randn(4, 4)
    with pytest.raises(TypeError, match=r"data must be an \(x, y\) pair of tensors, a DataLoader or a Split; "
                                        r"got a tensor of shape \(4, 4\); for the logits of inputs alone use "
                                        r"kdlab.evaluate.predict"):
        call(_mlp(), x, None)


def test_a_teacher_over_other_classes_is_named():
    x, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    teacher = models.MLP(in_features=4, hidden=(8,), num_classes=5)
    for batches in ((x, y), data.make_loader(x, y, batch_size=4)):
        for cache in (False, True) if isinstance(batches, tuple) else (False,):
            student = _mlp()
            before = [p.clone() for p in student.parameters()]
            with pytest.raises(ValueError, match="student: 3 classes, teachers: 5 classes"):
                distill.Distiller(student, teacher, cache_teacher=cache).fit(batches, epochs=1, progress=False)
            assert all(torch.equal(a, b) for a, b in zip(before, student.parameters()))
    with pytest.raises(ValueError, match=r"teachers\[0\]: 3 classes, teachers\[1\]: 5 classes"):
        distill.Distiller(_mlp(), [_mlp(), teacher]).fit((x, y), epochs=1, progress=False)


@pytest.mark.parametrize("call, match", [
    (lambda: models.create("mlp-student", input_shape=64), r"input_shape must be a shape, a tuple of positive integers"),
    (lambda: models.create("mlp-student", input_shape=(64, 0)), r"input_shape\[1\] must be an integer >= 1, got 0"),
    (lambda: models.MLP(hidden=32), r"hidden must be a sequence such as \(300, 100\) or \(32,\), got 32"),
    (lambda: models.MLP(dropout="0.1"), r"dropout must be a number in \[0, 1\], got '0.1'"),
    (lambda: models.MLP(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    (lambda: models.SmallCNN(channels=16), r"channels must be a sequence such as \(16, 32\), got 16"),
    (lambda: models.MultiHeadSelfAttention(7, 2), r"d_model \(7\) must be divisible by heads \(2\)"),
    (lambda: prune.sensitivity_scan(_mlp(), (torch.randn(2, 4), torch.tensor([0, 1])), 0.5),
     r"amounts must be a sequence such as \[0.5, 0.7, 0.9\], got 0.5"),
    (lambda: train.over_seeds(lambda s: s, 3), r"seeds must be a sequence such as \[0, 1, 2\] or range\(3\), got 3"),
    (lambda: train.over_seeds(lambda s: s, [0, -2]), r"seeds\[1\] must be an integer >= 0, got -2"),
    (lambda: data.load_digits(seed=-1), r"seed must be an integer >= 0, got -1"),
    (lambda: data.load_digits().few_labels(5), r"n_labelled must be at least the 10 classes"),
    (lambda: data.load_digits().subset(n_train=3), r"n_train must be at least the 10 classes"),
])
def test_constructor_and_helper_arguments(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_attention_with_an_explicit_head_dim_still_works():
    assert models.MultiHeadSelfAttention(7, 2, head_dim=4).q.out_features == 8


def test_previous_masks_of_another_model_are_refused():
    import copy

    model = _mlp()
    masks = prune.magnitude_prune(model, 0.5)
    twin = copy.deepcopy(model)
    with pytest.raises(ValueError, match=r"previous holds the masks of another model .* previous=masks.rebind\(copy\)"):
        prune.magnitude_prune(twin, 0.7, previous=masks)
    with pytest.raises(TypeError, match="previous must be the PruningMasks .* got dict"):
        prune.magnitude_prune(model, 0.7, previous={n: masks[n] for n in masks})
    grown = prune.magnitude_prune(twin, 0.7, previous=masks.rebind(twin))  # the remedy the message names
    assert all(bool((grown[n] <= masks[n]).all()) for n in masks)  # nothing pruned comes back


def test_select_channels_takes_a_batch_size_for_taylor():
    cnn = models.create("cnn-student", input_shape=(1, 8, 8))
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 10, (12,))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        prune.select_channels(cnn, 0.5, x[:1], criterion="taylor", data=(x, y), batch_size=0)
    small = prune.structured_prune(cnn, 0.5, x[:1], criterion="taylor", data=(x, y), batch_size=4, batches=3)
    assert evaluate.count_parameters(small) < evaluate.count_parameters(cnn)
