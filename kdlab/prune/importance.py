"""Importance criteria: small objects that say how much each weight, channel, head or
unit matters (higher = keep). The same object serves every kind of pruning:

- unstructured (:func:`kdlab.prune.unstructured_prune`) calls ``weight_scores``: one
  score per weight;
- structured (:func:`kdlab.prune.select_channels`) and unit pruning (heads, GRU/LSTM
  units) call ``channel_scores``: one score per channel of each
  :class:`~kdlab.prune.ChannelGroup`.

A channel is scored through the weights that carry it: for conv/linear channels the
rows of the layers that *produce* them (Li et al. 2017's filters); for attention heads
and recurrent units the columns of the layers that *read* them (their outgoing weights).

- :class:`Magnitude` ``p=1``/``p=2``: |w| per weight; per channel the sum over its
  producing layers of ||W[j]||_p.
- :class:`Random`: U(0, 1) draws from a seeded generator (the baseline to beat).
- :class:`Taylor` (Molchanov et al. 2019): s = sum over batches of (sum over the
  unit's weights of g * w)^2, g the gradient of the loss on that batch; for one
  weight (g * w)^2. For channels the producers' weights and biases and the norm
  scales and shifts after them count, for heads and units their outgoing weights.
- :class:`Snip` (Lee et al. 2019): |g * w| / sum_k |g_k * w_k| with g summed over the batches.
- :class:`GraSP` (Wang et al. 2020): w * (H g), H the Hessian of the loss and g its gradient
  (the paper's score S = -w * (H g), whose highest values it removes, with the sign flipped).
- :class:`SynFlow` (Tanaka et al. 2020): w * dR/dw with R = 1^T f(1) on the network with
  every parameter replaced by its absolute value; needs no data.
- :class:`BNScale` (network slimming, Liu et al. 2017): |gamma_j| of the BatchNorm
  after the channel; train with :class:`BNScalePenalty` (an L1 penalty on every
  BatchNorm scale) first so unimportant channels get scales near zero.
- your own: subclass :class:`Importance` and define ``channel_scores`` and/or
  ``weight_scores``.

>>> import torch
>>> from kdlab import models, prune
>>> cnn = models.create("cnn-teacher", input_shape=(1, 8, 8))
>>> small = prune.structured_prune(cnn, 0.5, torch.zeros(1, 1, 8, 8), criterion=prune.Magnitude(p=2))
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdlab import _validate
from kdlab.train import Callback


def batch_gradients(model: nn.Module, data, params: list, *, loss_fn=None, batches: int = 1,
                    batch_size: int = 128):
    """Yield, for each of the first ``batches`` batches of ``data``, the detached gradients
    of ``loss_fn(model(x), y)`` (cross-entropy by default) with respect to ``params``.

    The model runs in eval mode (no dropout, BatchNorm statistics untouched) and gets
    its mode back afterwards; ``.grad`` fields are left alone (``torch.autograd.grad``).
    Every gradient criterion of kdlab (Taylor, SNIP, for weights, channels and units) uses it."""
    for loss in batch_losses(model, data, params[0].device, loss_fn=loss_fn, batches=batches,
                             batch_size=batch_size):
        yield [g.detach() for g in torch.autograd.grad(loss, params)]


def batch_losses(model: nn.Module, data, device, *, loss_fn=None, batches: int = 1, batch_size: int = 128):
    """Yield ``loss_fn(model(x), y)`` (cross-entropy by default) for each of the first
    ``batches`` batches of ``data``, with the model in eval mode (its mode is restored
    afterwards); what :func:`batch_gradients` and :class:`GraSP` differentiate."""
    from kdlab.train import as_loader

    if data is None:
        raise ValueError("data is required: gradient criteria need batches (x, y) to compute gradients")
    batches = _validate.positive_int("batches", batches)
    loader = as_loader(data, batch_size=batch_size, shuffle=False)
    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(loader):
            if i == batches:
                break
            x, y = batch[0].to(device), batch[1].to(device)
            yield loss_fn(model(x), y)
    finally:
        model.train(was_training)


# ---------------------------------------------------------------- what a channel is made of

@dataclass
class Slice:
    """Dimension ``dim`` of parameter ``name`` seen by one group: ``index[p]`` is the
    group's channel at position ``p`` (-1 for positions of other groups). ``whole`` is
    ``(inner, repeat)`` when the group fills the dim as one segment, else None."""

    name: str
    dim: int
    role: str
    index: torch.Tensor
    whole: tuple | None


def channel_sum(t: torch.Tensor, s: Slice, channels: int) -> torch.Tensor:
    """Sum of ``t`` (a tensor of the parameter's shape) over each channel's positions: shape ``(channels,)``."""
    if s.whole is not None:
        inner, repeat = s.whole
        if s.dim == 0 and inner == repeat == 1:
            return t.reshape(channels, -1).sum(1)
        shape = [*t.shape[:s.dim], *([repeat] if repeat > 1 else []), channels,
                 *([inner] if inner > 1 else []), *t.shape[s.dim + 1:]]
        keep = s.dim + (repeat > 1)
        return t.reshape(shape).sum([d for d in range(len(shape)) if d != keep])
    flat = t.movedim(s.dim, 0).reshape(t.shape[s.dim], -1).sum(1)
    valid = s.index >= 0
    return torch.zeros(channels, dtype=t.dtype, device=t.device).index_add_(
        0, s.index[valid].to(t.device), flat[valid])


def channel_norm(t: torch.Tensor, s: Slice, channels: int, p: int) -> torch.Tensor:
    """||t restricted to channel j||_p for each channel j."""
    if s.whole == (1, 1) and s.dim == 0 and t.ndim > 1:
        return t.flatten(1).norm(p=p, dim=1)
    if p == 1:
        return channel_sum(t.abs(), s, channels)
    return channel_sum(t.abs() ** p, s, channels) ** (1.0 / p)


def group_slices(model: nn.Module, group, roles: tuple, *, parameters_only: bool = False) -> list:
    """The group's slices with a role in ``roles``, ordered by module (producers, then
    norms; readers for ``("in",)``), each module's in the order the graph met them."""
    slices = group.slices
    if not slices:  # a group built by hand: identity layouts from its module lists
        slices, modules = [], dict(model.named_modules())
        C = group.channels
        for role, names, attrs, dim in (("out", group.producers, ("weight",), 0),
                                        ("out_bias", group.producers, ("bias",), 0),
                                        ("in", group.readers, ("weight",), 1),
                                        ("norm", group.norms, ("weight", "bias", "running_mean", "running_var"), 0)):
            for name in names:
                for attr in attrs:
                    if getattr(modules[name], attr, None) is not None:
                        full = f"{name}.{attr}" if name else attr
                        slices.append(Slice(full, dim, role, torch.arange(C), (1, 1)))
    order = {"in": group.readers}.get(roles[0], group.producers + group.norms)
    chosen = []
    for module in dict.fromkeys(order):
        for s in slices:
            if s.role in roles and s.name.rpartition(".")[0] == module and s not in chosen:
                if parameters_only and not _is_parameter(model, s.name):
                    continue
                chosen.append(s)
    return chosen


def _is_parameter(model: nn.Module, name: str) -> bool:
    try:
        model.get_parameter(name)
        return True
    except AttributeError:
        return False


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    try:
        return model.get_parameter(name)
    except AttributeError:
        return model.get_buffer(name)


def scored_side(group) -> tuple:
    return ("out",) if group.kind == "channels" else ("in",)


# ---------------------------------------------------------------- criteria

class Importance:
    """Base class of importance criteria (higher score = more important).

    Subclasses define ``weight_scores(model, weights)`` (``{name: tensor of the
    weight's shape}`` for a dict of weights) and/or ``channel_scores(model, groups)``
    (one tensor of length ``group.channels`` per group, or None for a group the
    criterion cannot score: it keeps all its channels). ``group_slices`` and
    ``channel_sum`` give the weights of a channel.

    >>> import torch
    >>> from kdlab import models, prune
    >>> class FirstChannels(prune.Importance):   # keeps the lowest indices
    ...     def channel_scores(self, model, groups):
    ...         return [-torch.arange(g.channels, dtype=torch.float32) for g in groups]
    >>> cnn = models.create("cnn-student", input_shape=(1, 8, 8))
    >>> small = prune.structured_prune(cnn, 0.5, torch.zeros(1, 1, 8, 8), criterion=FirstChannels())
    """

    #: ``scope="global"`` divides each group's scores by their mean unless this is False
    normalize_globally = True

    def weight_scores(self, model: nn.Module, weights: dict) -> dict:
        raise TypeError(f"{type(self).__name__} scores channels, not single weights; "
                        "use it with structured or unit pruning")

    def channel_scores(self, model: nn.Module, groups: list) -> list:
        raise TypeError(f"{type(self).__name__} scores single weights, not channels; "
                        "use it with unstructured pruning")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Magnitude(Importance):
    """|w| per weight; per channel, sum over its producing layers of ||W[j]||_p
    (``p`` 1 or 2). Heads and units: the norms of their outgoing weights."""

    def __init__(self, p: int = 1):
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"p must be 1 or 2, got {p!r}")
        self.p = p

    def weight_scores(self, model, weights):
        return {n: w.detach().abs() for n, w in weights.items()}

    def channel_scores(self, model, groups):
        out = []
        for g in groups:
            total = None
            for s in group_slices(model, g, scored_side(g)):
                score = channel_norm(_tensor(model, s.name).detach(), s, g.channels, self.p)
                total = score if total is None else total + score
            out.append(total.cpu() if total is not None else torch.zeros(g.channels))
        return out

    def __repr__(self) -> str:
        return f"Magnitude(p={self.p})"


class Random(Importance):
    """U(0, 1) scores from a generator seeded with ``seed``: the baseline."""

    def __init__(self, seed: int = 0):
        self.seed = _validate.positive_int("seed", seed, allow_zero=True)

    def weight_scores(self, model, weights):
        gen = torch.Generator().manual_seed(self.seed)
        return {n: torch.rand(w.shape, generator=gen) for n, w in weights.items()}

    def channel_scores(self, model, groups):
        gen = torch.Generator().manual_seed(self.seed)
        return [torch.rand(g.channels, generator=gen) for g in groups]

    def __repr__(self) -> str:
        return f"Random(seed={self.seed})"


class _Gradient(Importance):
    def __init__(self, data, *, loss_fn=None, batches: int = 1, batch_size: int = 128):
        if data is None:
            raise ValueError(f"data is required for {type(self).__name__}: it needs batches (x, y) for gradients")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable (logits, y) -> loss, got {loss_fn!r}")
        self.data, self.loss_fn = data, loss_fn
        self.batches = _validate.positive_int("batches", batches)
        self.batch_size = _validate.positive_int("batch_size", batch_size)

    def gradients(self, model, params):
        return batch_gradients(model, self.data, params, loss_fn=self.loss_fn, batches=self.batches,
                               batch_size=self.batch_size)

    def _group_params(self, model, groups) -> list:
        return [[(s, model.get_parameter(s.name)) for s in self._slices(model, g)] for g in groups]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batches={self.batches})"


class Taylor(_Gradient):
    """First-order Taylor importance, one formula for weights, channels and units:
    s = sum over batches of (sum over the unit's weights of g * w)^2."""

    @staticmethod
    def _slices(model, g):
        if g.kind == "channels":
            return group_slices(model, g, ("out", "out_bias", "norm"), parameters_only=True)
        return group_slices(model, g, ("in",), parameters_only=True)

    def _accumulate(self, model, params: list, contributions) -> list:
        """The one Taylor loop: per batch, ``contributions(grads)`` gives each unit's
        sum of g * w; their squares add up over the batches."""
        totals = None
        for grads in self.gradients(model, params):
            squares = [c ** 2 for c in contributions(grads)]
            totals = squares if totals is None else [t + s for t, s in zip(totals, squares)]
        return totals

    def weight_scores(self, model, weights):
        params = list(weights.values())
        totals = self._accumulate(model, params, lambda grads: [g * w.detach() for g, w in zip(grads, params)])
        return {n: torch.zeros_like(w) + t for (n, w), t in zip(weights.items(), totals)}

    def channel_scores(self, model, groups):
        per_group = self._group_params(model, groups)
        flat = list({id(p): p for pairs in per_group for _, p in pairs}.values())
        where = {id(p): i for i, p in enumerate(flat)}

        def contributions(grads):
            out = []
            for g, pairs in zip(groups, per_group):
                total = None
                for s, p in pairs:
                    c = channel_sum(grads[where[id(p)]] * p.detach(), s, g.channels)
                    total = c if total is None else total + c
                out.append((total if total is not None else torch.zeros(g.channels)).cpu())
            return out

        return self._accumulate(model, flat, contributions)


class Snip(_Gradient):
    """SNIP connection sensitivity: |g * w| / sum_k |g_k * w_k|, g summed over the batches
    (per channel: the sum over its weights; the normalisation spans everything scored)."""

    _slices = staticmethod(Taylor._slices)

    def _summed(self, model, params):
        acc = [torch.zeros_like(p) for p in params]
        for grads in self.gradients(model, params):
            for a, g in zip(acc, grads):
                a += g
        return acc

    def weight_scores(self, model, weights):
        params = list(weights.values())
        saliency = {n: (g * w.detach()).abs() for (n, w), g in zip(weights.items(), self._summed(model, params))}
        total = sum(s.sum() for s in saliency.values()).clamp(min=torch.finfo(torch.float32).tiny)
        return {n: s / total for n, s in saliency.items()}

    def channel_scores(self, model, groups):
        per_group = self._group_params(model, groups)
        flat = list({id(p): p for pairs in per_group for _, p in pairs}.values())
        summed = dict(zip(map(id, flat), self._summed(model, flat)))
        out = [sum((channel_sum((summed[id(p)] * p.detach()).abs(), s, g.channels) for s, p in pairs),
                   torch.zeros(g.channels)).cpu() for g, pairs in zip(groups, per_group)]
        total = sum(s.sum() for s in out).clamp(min=torch.finfo(torch.float32).tiny)
        return [s / total for s in out]


class GraSP(_Gradient):
    """Gradient Signal Preservation (Wang, Zhang & Grosse 2020), per weight:
    score = w * (H g), g = sum over the batches of the gradient of the loss, H g the
    Hessian-vector product sum over the batches of d(g . grad L_b)/dw (double backward).

    Sign convention: the paper scores S(-w) = -w * (H g), the change of the gradient norm
    g^T g when w is removed, and removes the weights with the **highest** S. Every kdlab
    importance reads "larger = keep", so this returns -S = w * (H g): the lowest are removed,
    the same weights the paper removes. The scores may be negative; they are not normalised.

    ``temperature`` divides the logits before the loss (the authors' code uses 200 so that
    the softmax of a random network does not saturate; 1 is the plain loss). H and g are
    taken over the weights scored (the prunable weights), as in the paper.

    >>> from kdlab import data, models, prune
    >>> masks = prune.unstructured_prune(models.create("mlp-student"), 0.8, prune.GraSP(data.load_digits()))
    """

    def __init__(self, data, *, loss_fn=None, batches: int = 1, batch_size: int = 128, temperature: float = 1.0):
        super().__init__(data, loss_fn=loss_fn, batches=batches, batch_size=batch_size)
        self.temperature = _validate.positive_float("temperature", temperature)

    def _loss(self, logits, y):
        return (self.loss_fn or F.cross_entropy)(logits / self.temperature, y)

    def hessian_gradient(self, model, params: list) -> tuple:
        """``(g, H g)`` for the weights ``params``, each a list of tensors of their shapes."""
        g = [sum(grads) for grads in zip(*batch_gradients(model, self.data, params, loss_fn=self._loss,
                                                           batches=self.batches, batch_size=self.batch_size))]
        hg = [torch.zeros_like(p) for p in params]
        for loss in batch_losses(model, self.data, params[0].device, loss_fn=self._loss, batches=self.batches,
                                 batch_size=self.batch_size):
            grads = torch.autograd.grad(loss, params, create_graph=True)
            z = sum((grad * v).sum() for grad, v in zip(grads, g))
            for a, h in zip(hg, torch.autograd.grad(z, params)):
                a += h.detach()
        return g, hg

    def weight_scores(self, model, weights):
        params = list(weights.values())
        _, hg = self.hessian_gradient(model, params)
        return {n: w.detach() * h for (n, w), h in zip(weights.items(), hg)}

    def __repr__(self) -> str:
        return f"GraSP(batches={self.batches}, temperature={self.temperature:g})"


class SynFlow(Importance):
    """Iterative Synaptic Flow (Tanaka, Kunin, Yamins & Ganguli 2020), one round, no data:
    run the model in float64 and eval mode (no dropout, BatchNorm on its running statistics)
    with every parameter and buffer replaced by its absolute value, on an input of ones:
    R = 1^T f(1); score each weight by |w| * dR/d|w| (>= 0; larger = keep). The model's own
    values, signs and dtype are left as they were. A pruned (zero) weight scores 0.

    The paper prunes in 100 rounds with the exponential schedule
    s_k = 1 - (1 - amount)^(k / rounds), re-scoring the survivors each round, which is what
    keeps a whole layer from being cut off at extreme sparsity (layer collapse):
    ``prune.gradient_prune(model, amount, None, criterion="synflow", iterations=100)``.
    One round of this object alone is single-shot SynFlow.

    ``input_shape``: the shape of one example without the batch, e.g. ``(64,)`` or
    ``(1, 8, 8)``; if None it is read from ``data`` (a Split, ``(x, y)`` or a DataLoader)
    when given, else from the first prunable layer when that is an ``nn.Linear``.
    Double precision keeps R finite in deep networks, where it grows as the product of
    the layers' weight sums.

    >>> from kdlab import models, prune
    >>> masks = prune.unstructured_prune(models.create("mlp-student"), 0.8, prune.SynFlow())
    """

    def __init__(self, *, input_shape=None, data=None):
        self.input_shape = None if input_shape is None else _validate.shape("input_shape", input_shape)
        self.data = data

    def _input_shape(self, model) -> tuple:
        if self.input_shape is not None:
            return self.input_shape
        if self.data is not None:
            from kdlab.train import as_loader

            return tuple(next(iter(as_loader(self.data, batch_size=1, shuffle=False)))[0].shape[1:])
        from kdlab.prune.masks import prunable_weights

        first = dict(model.named_modules())[next(iter(prunable_weights(model))).rpartition(".")[0]]
        if isinstance(first, nn.Linear):
            return (first.in_features,)
        raise ValueError(f"SynFlow needs input_shape for a model whose first prunable layer is a "
                         f"{type(first).__name__}; pass input_shape=(channels, height, width) or data")

    def weight_scores(self, model, weights):
        shape = self._input_shape(model)
        # the linearised network: |every parameter and buffer| in float64, swapped in by
        # functional_call, so the model keeps its own values, signs and dtype
        state = {n: t.detach().abs().double() if t.is_floating_point() else t
                 for n, t in [*model.named_parameters(), *model.named_buffers()]}
        params = [state[n].requires_grad_() for n in weights]
        ones = torch.ones((1, *shape), dtype=torch.float64, device=params[0].device)
        was_training = model.training
        model.eval()
        try:
            r = torch.func.functional_call(model, state, (ones,)).sum()
        finally:
            model.train(was_training)
        grads = torch.autograd.grad(r, params)
        return {n: (p * g).detach() for n, p, g in zip(weights, params, grads)}

    def __repr__(self) -> str:
        return "SynFlow()" if self.input_shape is None else f"SynFlow(input_shape={self.input_shape})"


class BNScale(Importance):
    """Network slimming: |gamma_j| of the BatchNorm layers that normalise channel j
    (summed when there are several). Groups without a BatchNorm cannot be scored and
    keep all their channels. With ``scope="global"`` the raw scales are compared
    across layers, as in Liu et al. 2017."""

    normalize_globally = False

    def channel_scores(self, model, groups):
        modules = dict(model.named_modules())
        out = []
        for g in groups:
            total = None
            for s in group_slices(model, g, ("norm",)):
                module, _, attr = s.name.rpartition(".")
                if attr == "weight" and isinstance(modules.get(module), nn.modules.batchnorm._BatchNorm):
                    score = channel_sum(_tensor(model, s.name).detach().abs(), s, g.channels)
                    total = score if total is None else total + score
            out.append(None if total is None else total.cpu())
        return out


class BNScalePenalty(Callback):
    """A :func:`kdlab.train.fit` callback adding ``strength * sum |gamma|`` over every
    BatchNorm scale to the loss (network slimming; Liu et al. use 1e-4 to 1e-5): before
    each optimizer step ``strength * sign(gamma)`` is added to the scales' gradients.

    >>> from kdlab import data, models, prune, train
    >>> cnn = models.create("cnn-student", input_shape=(1, 8, 8))
    >>> _ = train.fit(cnn, data.load_digits(flat=False), epochs=1, callbacks=[prune.BNScalePenalty(1e-4)],
    ...               progress=False)
    """

    def __init__(self, strength: float = 1e-4):
        self.strength = _validate.positive_float("strength", strength)
        self._handle = None

    def on_train_start(self, state) -> None:
        scales = [m.weight for m in state.model.modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
        if not scales:
            raise ValueError(f"BNScalePenalty needs BatchNorm layers with scales; "
                             f"{type(state.model).__name__} has none")

        def add_penalty(optimizer, args, kwargs):
            with torch.no_grad():
                for w in scales:
                    if w.grad is not None:
                        w.grad.add_(torch.sign(w), alpha=self.strength)

        self._handle = state.optimizer.register_step_pre_hook(add_penalty)

    def on_train_end(self, state) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


CRITERIA = ("l1", "l2", "taylor", "random", "bn_scale")


def as_importance(criterion, *, data=None, loss_fn=None, batches: int = 1, batch_size: int = 128) -> Importance:
    """An :class:`Importance` from a name in :data:`CRITERIA` or an Importance object."""
    if isinstance(criterion, Importance):
        return criterion
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(map(repr, CRITERIA))} or a "
                         f"kdlab.prune.Importance; got {criterion!r}")
    if criterion == "taylor":
        if data is None:
            raise ValueError("data is required for criterion='taylor': it needs batches (x, y) for gradients")
        return Taylor(data, loss_fn=loss_fn, batches=batches, batch_size=batch_size)
    return {"l1": lambda: Magnitude(1), "l2": lambda: Magnitude(2), "random": Random,
            "bn_scale": BNScale}[criterion]()
