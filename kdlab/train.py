"""Seeding and the one training loop of kdlab.

- :func:`seed_everything`, :func:`num_threads`, :func:`over_seeds`: runs that repeat
  exactly, and a claim shown over several seeds;
- :func:`fit` with :class:`Callback`, :class:`TrainState` and :class:`History`;
  :func:`make_optimizer`, :func:`as_loader`;
- :func:`steps_per_epoch` and :func:`equal_step_epochs`: comparing runs on data of
  different sizes at the same number of optimizer steps.

Distillation and pruning do not copy this loop: they plug into it with an
``objective`` (how a batch becomes a loss) and callbacks (what happens around a
step), e.g. re-applying pruning masks or tightening them on a schedule. Measuring
the trained model is :mod:`kdlab.evaluate`'s.

>>> from kdlab import data, evaluate, models, train
>>> train.seed_everything(0)
>>> split = data.load_digits()
>>> model = models.create("mlp-student")
>>> history = train.fit(model, split.train, epochs=10, lr=3e-3, progress=False)
>>> evaluate.accuracy(model, split.test) > 0.85
True
"""
from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from kdlab import _deprecation, _validate

OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("fp32", "bf16")


def seed_everything(seed: int = 0, threads: int = 1, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch, fix the CPU thread count and, if asked,
    select deterministic algorithms, so a notebook prints the same numbers on
    every run on the same machine."""
    seed = _validate.positive_int("seed", seed, allow_zero=True)
    threads = _validate.positive_int("threads", threads)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy ships with torch wheels
        pass
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        deterministic_algorithms(True, warn_only=True)


def deterministic_algorithms(mode: bool = True, *, warn_only: bool = True) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=warn_only)`` without its import
    of the compiler. That function sets two things: the flag every operator reads, and
    ``torch._inductor.config.deterministic`` for ``torch.compile``; importing the compiler's
    config costs about a second of CPU in every fresh process, and kdlab compiles nothing.
    Until the compiler is imported, its documented switch ``TORCHINDUCTOR_DETERMINISTIC``
    gives its config the same value when it is; once imported, the public function is
    called as it is."""
    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    os.environ["TORCHINDUCTOR_DETERMINISTIC"] = "1" if mode else "0"
    torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


@contextlib.contextmanager
def num_threads(threads: int):
    """Run a block with ``threads`` CPU threads, restoring the previous count after it
    (results of training depend on the thread count; notebooks use one thread)."""
    threads = _validate.positive_int("threads", threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def distributed() -> tuple:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside ``torchrun``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _progress_default() -> bool:
    return os.environ.get("KDLAB_PROGRESS", "1") != "0" and "PYTEST_CURRENT_TEST" not in os.environ


def as_loader(data, *, batch_size: int = 64, shuffle: bool = True, seed: int = 0,
              name: str = "data") -> DataLoader:
    """Accept a DataLoader, a ``(x, y)`` tuple of tensors or a :class:`kdlab.data.Split`
    (its training part) and return a DataLoader."""
    from kdlab.data import Split, make_loader

    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Split):
        data = data.train
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return make_loader(data[0], data[1], batch_size=batch_size, shuffle=shuffle, seed=seed)
    raise TypeError(f"{name} must be a DataLoader, an (x, y) tuple of tensors or a kdlab.data.Split; "
                    f"got {type(data).__name__}")


@dataclass
class TrainState:
    """What callbacks see: the objects being trained and where the loop is."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    steps_per_epoch: int
    history: "History"
    device: torch.device
    epoch: int = 0
    step: int = 0          # optimizer steps taken so far, over all epochs
    batch: tuple = ()
    loss: float = float("nan")
    stop: bool = False     # a callback sets this to end training after the current step

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


class Callback:
    """Override what you need; every method receives the :class:`TrainState`."""

    def on_train_start(self, state: TrainState) -> None: ...
    def on_epoch_start(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


class _StepFunction(Callback):
    def __init__(self, fn: Callable[[TrainState], None]):
        self.fn = fn

    def on_step_end(self, state: TrainState) -> None:
        self.fn(state)


@dataclass
class History:
    """Per-epoch records of a :func:`fit` run."""

    records: list = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0

    def __getitem__(self, key: str) -> list:
        return [r[key] for r in self.records if key in r]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def final(self) -> dict:
        return self.records[-1] if self.records else {}

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v:.4f}" for k, v in self.final.items() if isinstance(v, float))
        return f"History(epochs={len(self)}, steps={self.steps}, {last})"


def make_optimizer(model: nn.Module, optimizer="adam", lr: float = 1e-3,
                   weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    """Build an optimizer by name (``"adam"``, ``"adamw"``, ``"sgd"``) over the trainable parameters."""
    _validate.choice("optimizer", optimizer, OPTIMIZERS)
    lr = _validate.positive_float("lr", lr)
    weight_decay = _validate.positive_float("weight_decay", weight_decay, allow_zero=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def cross_entropy_objective(loss_fn: Callable = F.cross_entropy) -> Callable:
    """The default objective: ``loss_fn(model(x), y)``."""

    def objective(model: nn.Module, batch: tuple) -> torch.Tensor:
        x, y = batch[0], batch[1]
        return loss_fn(model(x), y)

    return objective


def _check_targets(model: nn.Module, data) -> None:
    """For the default cross-entropy on in-memory data: integer class targets within the
    model's outputs (one example through the model in eval mode gives their number)."""
    from kdlab.data import Split

    if isinstance(data, Split):
        data = data.train
    if not (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        return
    x, y = data
    if y.ndim == 2 and y.is_floating_point():
        return  # class probabilities, which cross-entropy also takes
    y = _validate.class_indices("y (the training targets)", y)
    if not len(x):
        return
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            outputs = model(x[:1].to(device))
    finally:
        model.train(was_training)
    if outputs.ndim == 2 and int(y.max()) >= outputs.shape[1]:
        raise ValueError(f"y (the training targets) must hold class indices < {outputs.shape[1]}, the model's "
                         f"number of outputs; got {int(y.max())}")


def fit(model: nn.Module, data, *, epochs: int, lr: float = 1e-3, optimizer="adam",
        weight_decay: float = 0.0, loss_fn: Callable | None = None,
        objective: Callable | None = None, callbacks: Iterable = (), eval_data=None,
        scheduler: str | None = None, batch_size: int = 64, seed: int = 0,
        device=None, progress: bool | None = None, augment: Callable | None = None,
        precision: str = "fp32") -> History:
    """Train ``model`` and return its :class:`History`.

    Args:
        data: a DataLoader, an ``(x, y)`` tuple of tensors or a ``Split`` (batched
            with ``batch_size``, shuffled with ``seed``).
        epochs: passes over ``data``, >= 1.
        lr, optimizer, weight_decay: an optimizer name from :data:`OPTIMIZERS` with
            its settings, or an already built ``torch.optim.Optimizer`` (then ``lr``
            and ``weight_decay`` are its own).
        loss_fn: ``loss_fn(logits, targets)``, cross-entropy by default.
        objective: ``objective(model, batch) -> loss`` replaces ``loss_fn`` when the
            loss needs more than logits and targets (distillation does).
        callbacks: :class:`Callback` objects, or plain functions called after every
            optimizer step with the :class:`TrainState`.
        eval_data: if given, test accuracy is recorded after every epoch.
        scheduler: ``None`` or ``"cosine"`` (learning rate annealed to 0 over all steps).
        device: defaults to CUDA when available, else CPU.
        progress: a tqdm bar over epochs; off under pytest or with ``KDLAB_PROGRESS=0``.
        augment: ``augment(x) -> x`` applied to the inputs of every training batch
            (e.g. :func:`kdlab.data.random_shift`); evaluation sees the data as it is.
        precision: ``"fp32"``, or ``"bf16"`` for mixed precision (``torch.autocast``;
            meant for CUDA, where bf16 matmuls are fast).

    Under ``torchrun`` (``torch.distributed`` initialised, several processes), each
    process takes its share of every batch of the one seeded order, and
    DistributedDataParallel averages the gradients: ``batch_size`` is the global
    batch, and training equals one process with that batch, up to float rounding
    (a last batch smaller than the number of processes is skipped).
    The loss is averaged over all processes; only rank 0 shows progress.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    epochs = _validate.positive_int("epochs", epochs)
    if loss_fn is not None and objective is not None:
        raise ValueError("pass loss_fn or objective, not both")
    _validate.choice("scheduler", scheduler, (None, "cosine"))
    _validate.choice("precision", precision, PRECISIONS)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be a function of the input batch, got {augment!r}")
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        opt = make_optimizer(model, optimizer, lr, weight_decay)
    if objective is None and loss_fn is None:
        _check_targets(model, data)
    loader = as_loader(data, batch_size=batch_size, seed=seed)
    if len(loader) == 0:
        raise ValueError("data is empty: the loader yields no batch")
    callbacks = list(callbacks)
    for i, c in enumerate(callbacks):
        if not isinstance(c, Callback) and not callable(c):
            raise TypeError(f"callbacks[{i}] must be a Callback object or a function of the TrainState, "
                            f"got {c!r} ({type(c).__name__})")
    callbacks = [c if isinstance(c, Callback) else _StepFunction(c) for c in callbacks]
    objective = objective or cross_entropy_objective(loss_fn or F.cross_entropy)
    rank, world = distributed()
    if device is None and world > 1 and torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    was_training = model.training
    history = History()
    state = TrainState(model, opt, epochs, len(loader), history, device)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=state.total_steps)
             if scheduler == "cosine" else None)

    bar = None
    if rank == 0 and (progress if progress is not None else _progress_default()):
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="training", unit="epoch", leave=False)

    start = time.perf_counter()
    for c in callbacks:
        c.on_train_start(state)
    for epoch in range(epochs):
        state.epoch = epoch
        model.train()
        epoch_start, total, count = time.perf_counter(), 0.0, 0
        for c in callbacks:
            c.on_epoch_start(state)
        for batch in loader:
            global_n = len(batch[0])
            if global_n < world:
                continue  # too few examples to give every process one (all processes skip it)
            if world > 1:  # this process's share of the global batch
                batch = tuple(t.tensor_split(world)[rank] for t in batch)
            batch = tuple(t.to(device) for t in batch)
            if augment is not None:
                batch = (augment(batch[0]), *batch[1:])
            state.batch = batch
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = objective(net, batch)
            if world > 1:
                # DDP averages gradients over processes; weighting each share by its size
                # makes that the gradient of the global batch's mean loss, even when the
                # last batch does not split evenly.
                (loss * (len(batch[0]) * world / global_n)).backward()
                shared = torch.tensor([loss.item() * len(batch[0])], dtype=torch.float64)
                torch.distributed.all_reduce(shared)
                state.loss = shared.item() / global_n
            else:
                loss.backward()
                state.loss = loss.item()
            opt.step()
            if sched is not None:
                sched.step()
            state.step += 1
            total += state.loss * global_n
            count += global_n
            for c in callbacks:
                c.on_step_end(state)
            if state.stop:
                break
        record = {"epoch": epoch + 1, "loss": total / max(count, 1),
                  "seconds": time.perf_counter() - epoch_start}
        if eval_data is not None:
            from kdlab.evaluate import accuracy

            record["eval_acc"] = accuracy(model, eval_data, device=device)
        history.records.append(record)
        history.steps = state.step
        for c in callbacks:
            c.on_epoch_end(state)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        if state.stop:
            break
    for c in callbacks:
        c.on_train_end(state)
    if bar is not None:
        bar.close()
    history.seconds = time.perf_counter() - start
    model.train(was_training)
    return history


def steps_per_epoch(n: int, batch_size: int = 64) -> int:
    """Optimizer steps of one epoch over ``n`` examples: ``ceil(n / batch_size)`` (the last
    batch may be smaller)."""
    n = _validate.positive_int("n", n, allow_zero=True)
    batch_size = _validate.positive_int("batch_size", batch_size)
    return -(-n // batch_size)


def _size(name: str, data) -> int:
    """The number of training examples of ``data``: a count, an ``(x, y)`` pair or a Split."""
    from kdlab.data import Split

    if isinstance(data, Split):
        return len(data.y_train)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return len(data[0])
    if isinstance(data, torch.Tensor) or isinstance(data, bool) or not isinstance(data, int):
        raise TypeError(f"{name} must be a number of examples, an (x, y) pair of tensors or a Split; "
                        f"got {type(data).__name__}")
    return _validate.positive_int(name, data)


def equal_step_epochs(epochs: int, reference, data, *, batch_size: int = 64) -> int:
    """Epochs over ``data`` that take as many optimizer steps as ``epochs`` over ``reference``:
    ``round(epochs * ceil(N_ref / b) / ceil(N / b))`` for batch size ``b``.

    A model trained on fewer examples takes fewer steps per epoch; comparing it with one
    trained on more at equal epochs gives it less training, not less data.
    ``reference`` and ``data`` are numbers of examples, ``(x, y)`` pairs or Splits
    (their training part).

    >>> equal_step_epochs(20, 898, 90)   # 15 steps per epoch against 2
    150
    """
    epochs = _validate.positive_int("epochs", epochs)
    reference_steps = steps_per_epoch(_size("reference", reference), batch_size)
    steps = steps_per_epoch(_size("data", data), batch_size)
    if steps == 0:
        raise ValueError("data must hold at least one example, got none")
    return round(epochs * reference_steps / steps)


def over_seeds(fn: Callable[[int], object], seeds) -> list:
    """``[fn(seed) for seed in seeds]``, each call after ``seed_everything(seed)`` with the
    current thread count, so a claim is shown over several seeds, not one lucky run."""
    seeds = _validate.sequence("seeds", seeds, "[0, 1, 2] or range(3)")
    for i, seed in enumerate(seeds):
        _validate.positive_int(f"seeds[{i}]", seed, allow_zero=True)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got an empty sequence")
    threads = torch.get_num_threads()
    results = []
    for seed in seeds:
        seed_everything(seed, threads=threads)
        results.append(fn(seed))
    return results


__getattr__ = _deprecation.moved_attributes(__name__, {
    "evaluate": "kdlab.evaluate.accuracy", "predict": "kdlab.evaluate.predict",
    "labelled_pair": "kdlab.evaluate.labelled_pair"})
