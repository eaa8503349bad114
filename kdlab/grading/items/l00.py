"""Lesson 00 (start here): metrics, parameter counts and a first measurement."""
from __future__ import annotations

import torch

from kdlab.evaluate import classification_metrics, count_parameters
from kdlab.grading.registry import ChoiceItem, FunctionItem, NumberItem
from kdlab.grading.shared import accuracy, integer
from kdlab.models import MLP, SmallCNN


def _labels(generator):
    """True labels and predicted labels that agree on a random share of the examples;
    some draws leave classes out of ``y_true`` or never predict them."""
    n, k = integer(generator, 6, 60), integer(generator, 2, 8)
    y_true = torch.randint(0, k, (n,), generator=generator)
    correct = torch.rand(n, generator=generator) < torch.rand(1, generator=generator)
    y_pred = torch.where(correct, y_true, torch.randint(0, k, (n,), generator=generator))
    if integer(generator, 0, 2) == 0:  # one class is never predicted
        y_pred[y_pred == int(y_true[0])] = (int(y_true[0]) + 1) % k
    if integer(generator, 0, 2) == 0:  # label 0 occurs nowhere, though labels go up to k-1
        y_true, y_pred = y_true.clamp(min=1), y_pred.clamp(min=1)
    return y_true, y_pred


def _accuracy_inputs(generator):
    y_true, y_pred = _labels(generator)
    if integer(generator, 0, 1):  # predictions as logits, as a model returns them
        k = int(max(y_true.max(), y_pred.max())) + 1
        logits = torch.randn(len(y_true), k, generator=generator)
        logits[torch.arange(len(y_true)), y_pred] += 3.0
        return y_true, logits
    return y_true, y_pred


def _describe_labels(args) -> str:
    y_true, y_pred = args
    how = f"logits of shape {tuple(y_pred.shape)}" if y_pred.ndim == 2 else "class indices"
    return f"a batch of {len(y_true)} labels with predictions given as {how}"


def _predicted(y_pred):
    return y_pred.argmax(1) if y_pred.ndim == 2 else y_pred


def _per_class(y_true, y_pred):
    """Per-class F1, support and the mask of labels that occur."""
    k = int(max(y_true.max(), y_pred.max())) + 1
    f1, support = torch.zeros(k), torch.zeros(k)
    for c in range(k):
        tp = float(((y_pred == c) & (y_true == c)).sum())
        fp = float(((y_pred == c) & (y_true != c)).sum())
        fn = float(((y_pred != c) & (y_true == c)).sum())
        f1[c] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        support[c] = float((y_true == c).sum())
    occurs = torch.zeros(k, dtype=torch.bool)
    occurs[torch.cat([y_true, y_pred]).unique()] = True
    return f1, support, occurs


def _f1_weighted(y_true, y_pred):
    f1, support, _ = _per_class(y_true, y_pred)
    return float((f1 * support).sum() / support.sum())


def _f1_all_classes(y_true, y_pred):
    return float(_per_class(y_true, y_pred)[0].mean())


def _f1_of_means(y_true, y_pred):
    m = classification_metrics(y_true, y_pred)
    p, r = m["precision"], m["recall"]
    return 2 * p * r / (p + r) if p + r else 0.0


def _nan_hint(answer, args):
    if isinstance(answer, float) and answer != answer:
        return ("your result is NaN: a class that is never predicted has precision 0/0; "
                "count it as 0, as scikit-learn does")
    return None


def _random_model(generator):
    if integer(generator, 0, 1):
        hidden = tuple(integer(generator, 2, 20) for _ in range(integer(generator, 1, 3)))
        model = MLP(integer(generator, 2, 16), hidden, integer(generator, 2, 10))
    else:
        channels = tuple(integer(generator, 2, 8) for _ in range(integer(generator, 1, 2)))
        model = SmallCNN(integer(generator, 1, 3), integer(generator, 2, 10), channels=channels)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.rand(p.shape, generator=generator) > 0.3)  # some exact zeros
    frozen = [p for p in model.parameters()][: integer(generator, 0, 2)]
    for p in frozen:  # a frozen layer is still part of the model
        p.requires_grad_(False)
    return model, bool(integer(generator, 0, 1))


def _describe_model(args) -> str:
    model, nonzero = args
    return f"a random {type(model).__name__} with nonzero={nonzero}"


def _ignores_nonzero(answer, args):
    model, nonzero = args
    if nonzero and answer == count_parameters(model):
        return "with nonzero=True count only the entries that are not exactly zero"
    if not nonzero and answer == count_parameters(model, nonzero=True):
        return "with nonzero=False count every entry, zeros included"
    return None


def _state_dict_count(model, nonzero=False):
    tensors = model.state_dict().values()
    return sum(int(torch.count_nonzero(t)) if nonzero else t.numel() for t in tensors)


def _trainable_count(model, nonzero=False):
    params = [p for p in model.parameters() if p.requires_grad]
    return sum(int(torch.count_nonzero(p)) if nonzero else p.numel() for p in params)


def _weights_only_count(model, nonzero=False):
    params = [p for p in model.parameters() if p.ndim > 1]
    return sum(int(torch.count_nonzero(p)) if nonzero else p.numel() for p in params)


def _tiny_percent(part: str = "test") -> float:
    return 100 * accuracy("mlp-tiny", part)


ITEMS = [
    FunctionItem(
        "00.accuracy", points=1,
        prompt="accuracy(y_true, y_pred) -> float: share of correct predictions; "
               "y_pred holds class indices or a 2-D tensor of logits.",
        reference=lambda y_true, y_pred: classification_metrics(y_true, y_pred)["accuracy"],
        inputs=_accuracy_inputs, describe=_describe_labels,
        wrong=[
            (lambda t, p: float((_predicted(p) == t).sum()),
             "return the share of correct predictions, not their count"),
            (lambda t, p: 1 - float((_predicted(p) == t).double().mean()),
             "that is the error rate; accuracy is the share of correct predictions"),
            (lambda t, p: 100 * float((_predicted(p) == t).double().mean()),
             "return a fraction in [0, 1], not a percentage"),
        ],
    ),
    FunctionItem(
        "00.macro_f1", points=2,
        prompt="macro_f1(y_true, y_pred) -> float: mean of the per-class F1 scores over "
               "the labels that occur in y_true or y_pred.",
        reference=lambda y_true, y_pred: classification_metrics(y_true, y_pred)["f1"],
        inputs=_labels, describe=_describe_labels, explain=_nan_hint,
        wrong=[
            (lambda t, p: float((p == t).double().mean()),
             "that is micro-F1, which equals accuracy here; macro-F1 averages the per-class F1 scores"),
            (_f1_weighted,
             "you weighted each class by its support; macro-F1 gives every class the same weight"),
            (_f1_all_classes,
             "you averaged over classes that occur in neither y_true nor y_pred; "
             "average over the labels that occur"),
            (_f1_of_means,
             "you took the F1 of macro-precision and macro-recall; macro-F1 is the mean "
             "of the per-class F1 scores"),
        ],
    ),
    FunctionItem(
        "00.count_params", points=1, n_cases=12,
        prompt="count_params(model, nonzero=False) -> int: entries of model.parameters(); "
               "with nonzero=True only those that are not exactly zero.",
        reference=count_parameters, inputs=_random_model, describe=_describe_model,
        explain=_ignores_nonzero,
        wrong=[
            (_state_dict_count,
             "you counted buffers (BatchNorm running statistics) too; count model.parameters() only"),
            (_trainable_count,
             "you skipped frozen parameters (requires_grad=False); they are still parameters"),
            (_weights_only_count,
             "you counted only weight matrices and kernels; biases and BatchNorm's scale and "
             "shift are parameters too"),
        ],
    ),
    ChoiceItem(
        "00.imbalance_metric", points=1,
        prompt="On a test set where 90% of the labels are one class, which metric exposes "
               "a model that always predicts that class?",
        options=["accuracy", "macro_f1"], answer="macro_f1",
        hints={"accuracy": "compute both metrics for a constant prediction on imbalanced labels "
                           "and compare them"},
    ),
    NumberItem(
        "00.tiny_accuracy", points=1, abs_tol=0.5,
        prompt="Test accuracy, in percent, of kdlab.models.pretrained('mlp-tiny') on the "
               "digits test split.",
        target=_tiny_percent,
        wrong=[
            (lambda: _tiny_percent() / 100, "give a percentage (e.g. 93.5), not a fraction"),
            (lambda: 100 - _tiny_percent(), "that is the error rate; give the accuracy"),
            (lambda: _tiny_percent("train"), "that is the training accuracy; measure on the test split"),
        ],
        hint="measure it: kdlab.evaluate.accuracy(model, data.test) * 100 with data = load_digits()",
    ),
]
