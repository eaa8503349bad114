"""Measuring a model: everything kdlab reports about one lives here.

- what it predicts: :func:`predict` (logits), :func:`accuracy`,
  :func:`classification_metrics` (accuracy, macro precision, recall and F1);
- what it costs: :func:`count_parameters` (and non-zeros), :func:`model_size_bytes`,
  :func:`flops` / :func:`macs`, :func:`latency` and :func:`latency_interleaved`;
- comparing models: :func:`report` (a table and a trade-off plot),
  :func:`mcnemar_exact` (paired test on one test set), :func:`mean_std` over seeds.

Each metric misleads alone: non-zeros say nothing about speed, FLOPs nothing
about memory traffic, a file size nothing about accuracy. :func:`report`
measures them together.

>>> from kdlab import data, evaluate, models
>>> split = data.load_digits()
>>> teacher = models.pretrained("mlp-teacher")
>>> evaluate.accuracy(teacher, split.test) > 0.95
True
"""
from __future__ import annotations

import io
import statistics

import torch
from torch import nn
from torch.utils.data import DataLoader

from kdlab import _deprecation, _validate
from kdlab.quantize import quantized_linears


@torch.no_grad()
def predict(model: nn.Module, data, *, device=None, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` on ``data`` (a tensor of inputs, ``(x, y)``, a Split's test
    part or a DataLoader), in eval mode; the model's mode is restored afterwards."""
    from kdlab.data import Split
    from kdlab.train import as_loader

    if isinstance(data, Split):
        data = data.test
    if isinstance(data, torch.Tensor):
        batches = data.split(batch_size)
    else:
        batches = (b[0] for b in as_loader(data, batch_size=batch_size, shuffle=False))
    if device is None:
        # a model without parameters (e.g. dynamically quantized) runs on the CPU
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x.to(device)).cpu() for x in batches])
    finally:
        model.train(was_training)


def labelled_pair(data, name: str = "data") -> tuple:
    """``data`` as an ``(x, y)`` pair of tensors of equal length (a Split gives its test
    part); anything else is refused with a message that says what is allowed."""
    from kdlab.data import Split

    if isinstance(data, Split):
        return data.test
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        if len(data[0]) != len(data[1]):
            raise ValueError(f"{name} must pair x and y of the same length, got {len(data[0])} and {len(data[1])}")
        return tuple(data)
    got = (f"a tensor of shape {tuple(data.shape)}" if isinstance(data, torch.Tensor)
           else f"a {type(data).__name__}" + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""))
    hint = "; for the logits of inputs alone use kdlab.evaluate.predict" if isinstance(data, torch.Tensor) else ""
    raise TypeError(f"{name} must be an (x, y) pair of tensors, a DataLoader or a Split; got {got}{hint}")


def _share_correct(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """The share of ``predicted == y``, the one accuracy formula of kdlab (a float32 mean)."""
    return (predicted == y).float().mean().item()


def accuracy(model: nn.Module, data, *, device=None) -> float:
    """Top-1 accuracy in [0, 1], ``1/N sum_n [argmax_c z_nc == y_n]``, on ``data``
    (``(x, y)``, a DataLoader, or a Split's test part)."""
    if isinstance(data, DataLoader):  # one pass, so a shuffling loader stays paired
        predicted, labels = [], []
        for batch in data:
            predicted.append(predict(model, batch[0], device=device).argmax(1))
            labels.append(batch[1])
        return _share_correct(torch.cat(predicted), torch.cat(labels)) if labels else 0.0
    x, y = labelled_pair(data)
    return _share_correct(predict(model, x, device=device).argmax(1), y)


def count_parameters(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameters (every tensor in ``model.parameters()``, plus the packed
    weights and biases of quantized Linear layers, which are not parameters); with
    ``nonzero=True`` only the entries that are not exactly zero (for int8 weights:
    their integer values).

    >>> from kdlab import models, quantize
    >>> mlp = models.create("mlp-student")
    >>> count_parameters(mlp), count_parameters(quantize.quantize_int8(mlp))
    (2410, 2410)
    """
    tensors = list(model.parameters())
    for m in quantized_linears(model).values():
        tensors += [t.int_repr() if t.is_quantized else t for t in (m.weight(), m.bias()) if t is not None]
    if nonzero:
        return sum(int(torch.count_nonzero(t)) for t in tensors)
    return sum(t.numel() for t in tensors)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what a checkpoint costs on disk.

    Saving to a file gives the same number of bytes when the file is named
    ``archive.pt`` (torch.save names its zip records after the file). Zeros cost
    as much as any other number here; see ``kdlab.prune.save_sparse`` for a file
    that only stores the non-zeros."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def flops(model: nn.Module, example_input) -> int:
    """Floating-point operations of one forward pass on ``example_input``, as counted
    by ``torch.utils.flop_counter``: 2 per multiply-add in matrix products and
    convolutions; element-wise work (bias, ReLU, BatchNorm) is not counted.
    A Linear layer of ``n_in`` to ``n_out`` on a batch of ``b`` costs ``2*b*n_in*n_out``.

    ``flop_counter`` does not see quantized kernels (it counts 0 for them); a
    quantized Linear layer is counted here by the same formula, as the operations
    it performs, in integers.
    """
    from torch.utils.flop_counter import FlopCounterMode

    args = _validate.example_input("example_input", example_input)
    quantized = 0

    def count(module, inputs, output):
        nonlocal quantized
        rows = inputs[0].numel() // module.in_features
        quantized += 2 * rows * module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in quantized_linears(model).values()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*args)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return int(counter.get_total_flops()) + quantized


def macs(model: nn.Module, example_input) -> int:
    """Multiply-accumulate operations: ``flops(...) // 2``."""
    return flops(model, example_input) // 2


def _benchmark_module():
    import logging

    # torch.utils.benchmark imports cpp_extension, which logs a warning about
    # CUDA_HOME on machines without a CUDA runtime; it says nothing about timing.
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        log.setLevel(level)
    return benchmark


def latency_samples(model: nn.Module, example_input, *, warmup: int = 10, repeats: int = 30,
                    threads: int = 1, min_block_ms: float = 1.0) -> list:
    """Milliseconds per forward pass, one sample per repeat, after ``warmup`` passes.

    Timed with ``torch.utils.benchmark.Timer`` under ``no_grad`` in eval mode with a
    fixed thread count. Each sample averages enough calls to last ``min_block_ms``,
    so sub-millisecond models are not dominated by timer overhead."""
    benchmark = _benchmark_module()
    warmup = _validate.positive_int("warmup", warmup, allow_zero=True)
    repeats = _validate.positive_int("repeats", repeats)
    threads = _validate.positive_int("threads", threads)
    min_block_ms = _validate.positive_float("min_block_ms", min_block_ms)
    args = _validate.example_input("example_input", example_input)
    was_training = model.training
    model.eval()
    try:
        timer = benchmark.Timer(stmt="with torch.no_grad(): model(*args)",
                                globals={"model": model, "args": args, "torch": torch},
                                num_threads=threads)
        if warmup:
            timer.timeit(warmup)
        one = timer.timeit(1).mean
        number = max(1, min(1000, int(min_block_ms / 1e3 / max(one, 1e-9))))
        return [timer.timeit(number).mean * 1e3 for _ in range(repeats)]
    finally:
        model.train(was_training)


def latency(model: nn.Module, example_input, *, warmup: int = 10, repeats: int = 30,
            threads: int = 1) -> float:
    """Median milliseconds per forward pass over ``repeats`` samples after ``warmup``
    passes (see :func:`latency_samples`)."""
    return statistics.median(latency_samples(model, example_input, warmup=warmup,
                                             repeats=repeats, threads=threads))


def latency_interleaved(models: dict, example_input, *, rounds: int = 10, repeats: int = 5,
                        warmup: int = 10, threads: int = 1, min_block_ms: float = 1.0) -> dict:
    """Latency samples of several models taken in interleaved rounds: ``{name: [ms, ...]}``.

    Each round takes ``repeats`` samples of every model in turn (see
    :func:`latency_samples`; the ``warmup`` passes run in the first round only), so load
    from other processes that comes and goes falls on all the models alike instead of
    on whichever was being timed. Other load only ever adds time: ``min(samples)`` is the
    least disturbed figure, and ratios of the minima are what survives a busy machine.

    >>> from kdlab import models
    >>> mlp = models.create("mlp-student")
    >>> out = latency_interleaved({"a": mlp, "b": mlp}, torch.zeros(1, 64), rounds=2, repeats=3)
    >>> sorted(out), [len(v) for v in out.values()]
    (['a', 'b'], [6, 6])
    """
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict of name -> model, got {models!r}")
    rounds = _validate.positive_int("rounds", rounds)
    repeats = _validate.positive_int("repeats", repeats)
    warmup = _validate.positive_int("warmup", warmup, allow_zero=True)
    samples = {name: [] for name in models}
    for r in range(rounds):
        for name, model in models.items():
            samples[name] += latency_samples(model, example_input, warmup=warmup if r == 0 else 0,
                                             repeats=repeats, threads=threads, min_block_ms=min_block_ms)
    return samples


def mcnemar_exact(correct_a, correct_b) -> dict:
    """McNemar's exact test of two classifiers scored on the same examples.

    ``correct_a`` and ``correct_b`` are boolean tensors (or sequences), one entry per test
    example: was model A (B) right on it? Only the discordant examples carry evidence:
    ``a_only`` (A right, B wrong) and ``b_only`` (B right, A wrong). If the two models are
    equally accurate, each discordant example is a fair coin, so ``a_only`` follows
    Binomial(a_only + b_only, 1/2); the two-sided p-value doubles the smaller tail (capped
    at 1). Returns ``{"n", "a_only", "b_only", "difference", "p_value"}`` with
    ``difference`` = accuracy of A minus accuracy of B.

    A paired test is the right one for two models on one test set: dividing a difference
    of accuracies by the standard error of one accuracy ignores that both models get the
    same easy and hard examples.

    >>> r = mcnemar_exact([True, True, True, False], [True, False, False, False])
    >>> r["a_only"], r["b_only"], r["p_value"]
    (2, 0, 0.5)
    """
    import math

    a = torch.as_tensor(correct_a).bool().flatten()
    b = torch.as_tensor(correct_b).bool().flatten()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty and of the same length, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    m = a_only + b_only
    tail = sum(math.comb(m, k) for k in range(min(a_only, b_only) + 1))
    p_value = min(1.0, 2 * tail / 2 ** m)
    return {"n": a.numel(), "a_only": a_only, "b_only": b_only,
            "difference": (a_only - b_only) / a.numel(), "p_value": p_value}


def classification_metrics(y_true, y_pred, num_classes: int | None = None) -> dict:
    """Accuracy and macro-averaged precision, recall and F1.

    ``y_pred`` is class indices or a 2-D tensor of logits/probabilities (argmax is
    taken). A class never predicted has precision 0, as in scikit-learn's default."""
    if num_classes is not None:
        num_classes = _validate.positive_int("num_classes", num_classes)
    y_true = _validate.class_indices("y_true", y_true, num_classes=num_classes)
    y_pred = torch.as_tensor(y_pred)
    if y_pred.ndim == 2:
        y_pred = y_pred.argmax(1)
    y_pred = _validate.class_indices("y_pred", y_pred, num_classes=num_classes)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got shapes "
                         f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}")
    if len(y_true) == 0:
        raise ValueError("y_true is empty")
    n = num_classes or int(max(y_true.max(), y_pred.max())) + 1
    present = torch.unique(torch.cat([y_true, y_pred]))
    confusion = torch.zeros(n, n, dtype=torch.long)
    confusion.index_put_((y_true.long(), y_pred.long()), torch.ones_like(y_true, dtype=torch.long),
                         accumulate=True)
    tp = confusion.diag().double()
    predicted, actual = confusion.sum(0).double(), confusion.sum(1).double()
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(tp))
    labels = present.long()  # average over labels that occur, as scikit-learn does
    return {
        "accuracy": _share_correct(y_pred, y_true),
        "precision": precision[labels].mean().item(),
        "recall": recall[labels].mean().item(),
        "f1": f1[labels].mean().item(),
    }


class Report:
    """One row per model; ``print(report)`` gives a table, ``report.plot()`` a trade-off plot."""

    COLUMNS = ("accuracy", "precision", "recall", "f1", "params", "nonzero",
               "size_kb", "mflops", "latency_ms")

    def __init__(self, rows: dict):
        self.rows = rows

    def __getitem__(self, name: str) -> dict:
        return self.rows[name]

    def columns(self) -> list:
        present = set().union(*(r.keys() for r in self.rows.values())) if self.rows else set()
        return [c for c in self.COLUMNS if c in present]

    def to_markdown(self) -> str:
        cols = self.columns()
        lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, row in self.rows.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        cols = self.columns()
        width = max([5] + [len(n) for n in self.rows])
        head = f"{'model':<{width}}  " + "  ".join(f"{c:>10}" for c in cols)
        body = [f"{n:<{width}}  " + "  ".join(f"{_fmt(r.get(c)):>10}" for c in cols)
                for n, r in self.rows.items()]
        return "\n".join([head] + body)

    __repr__ = __str__

    def plot(self, x: str = "size_kb", y: str = "accuracy", ax=None):
        """Scatter of ``y`` against ``x`` with one labelled point per model."""
        from kdlab.plots import tradeoff_plot

        _validate.choice("x", x, self.columns())
        _validate.choice("y", y, self.columns())
        return tradeoff_plot({n: (r[x], r[y]) for n, r in self.rows.items()}, xlabel=x, ylabel=y, ax=ax)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def report(models: dict, data, example_input=None, *, measure_latency: bool = True,
           size_fn=model_size_bytes, warmup: int = 10, repeats: int = 30, threads: int = 1) -> Report:
    """Evaluate every model of ``models`` (``{name: model}``) on ``data`` (``(x, y)`` or a
    Split's test part) and measure its cost on ``example_input`` (default: one test
    example). ``size_fn(model)`` gives bytes on disk; pass ``kdlab.prune.sparse_size_bytes``
    to count a sparse export instead of a dense checkpoint."""
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict of name -> model, got {models!r}")
    x, y = labelled_pair(data)
    if example_input is None:
        example_input = x[:1]
    rows = {}
    for name, model in models.items():
        logits = predict(model, x)
        row = classification_metrics(y, logits)
        row.update(params=count_parameters(model), nonzero=count_parameters(model, nonzero=True),
                   size_kb=size_fn(model) / 1024, mflops=flops(model, example_input) / 1e6)
        if measure_latency:
            row["latency_ms"] = latency(model, example_input, warmup=warmup, repeats=repeats,
                                        threads=threads)
        rows[name] = row
    return Report(rows)


__getattr__ = _deprecation.moved_attributes(__name__, {"compare": "kdlab.evaluate.report"})


def mean_std(values) -> tuple:
    """Mean and sample standard deviation (0 for a single value) of a sequence of numbers."""
    values = torch.as_tensor([float(v) for v in values], dtype=torch.float64)
    if values.numel() == 0:
        raise ValueError("values must hold at least one number")
    std = values.std().item() if values.numel() > 1 else 0.0
    return values.mean().item(), std


def format_mean_std(values, digits: int = 4) -> str:
    """``"0.9512 ± 0.0043 (n=5)"``."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={len(values)})"
