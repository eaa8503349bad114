"""Which weights are prunable, the masks that keep them pruned, and sparsity.

A mask is a bool tensor of a parameter's shape, ``True`` where the weight is
kept. :class:`PruningMasks` zeroes the pruned entries in place and keeps them at
zero while training by re-applying itself after every optimizer step. No forward
hook is registered and no parameter is renamed, so ``copy.deepcopy``,
``torch.save``/``load`` and ``torch.export`` see an ordinary model whose pruned
weights are exact zeros.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from kdlab.train import Callback

PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)
_INT_OF_WIDTH = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
# Optimizer state that optimizers take the square root of, keyed as in torch.optim.
_ROOTED_STATE = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum")


def prunable_weights(model: nn.Module, layers=None) -> dict:
    """``{parameter name: weight}`` of the layers pruning may touch.

    By default every ``nn.Linear`` and convolution weight; biases and norm layers
    are never pruned. ``layers`` narrows the choice to module names (e.g.
    ``["layers.0", "features.0.0"]``) or module objects of ``model``.

    Raises ``ValueError`` for an unknown layer, a layer that is not Linear/Conv,
    or a model without any prunable layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if layers is None:
        chosen = [n for n, m in modules.items() if isinstance(m, PRUNABLE)]
    else:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        by_id = {id(m): n for n, m in modules.items()}
        chosen = []
        for layer in layers:
            name = by_id.get(id(layer)) if isinstance(layer, nn.Module) else layer
            if name not in modules:
                raise ValueError(f"layers contains {layer!r}, which is not a module of the model; "
                                 f"prunable layers are {[n for n, m in modules.items() if isinstance(m, PRUNABLE)]}")
            if not isinstance(modules[name], PRUNABLE):
                raise ValueError(f"layers contains {name!r} ({type(modules[name]).__name__}); "
                                 "only Linear and Conv layers can be pruned")
            chosen.append(name)
    if not chosen:
        raise ValueError(f"model has no prunable layers (Linear or Conv): {type(model).__name__}")
    return {f"{n}.weight" if n else "weight": modules[n].weight for n in chosen}


def _bit_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``mask`` as integers as wide as ``like``'s elements: all bits set where kept, none where pruned."""
    dtype = _INT_OF_WIDTH[like.element_size()]
    return torch.zeros(mask.shape, dtype=dtype, device=like.device).masked_fill_(mask.to(like.device), -1)


class PruningMasks(Mapping):
    """Read-only mapping ``parameter name -> bool mask`` (``True`` = kept), bound to a model.

    Args:
        model: the model whose parameters the masks refer to.
        masks: ``{name: bool tensor}`` with the shapes of ``model.get_parameter(name)``.

    ``apply()`` zeroes the pruned weights: w <- w * m (as +0.0). Optimizers with momentum,
    Adam moments or weight decay move zeroed weights again, so the masks must be
    re-applied after every step: ``attach(optimizer)`` does that with an optimizer
    step post-hook, ``callback()`` does it inside :func:`kdlab.train.fit`. Masks act on
    the parameters of the model they are bound to: for a copy of it, ``rebind(copy)``
    (attaching the old masks to the copy's optimizer raises an error instead of
    silently letting the copy regrow).

    >>> from kdlab import models, prune
    >>> model = models.create("mlp-student")
    >>> masks = prune.magnitude_prune(model, 0.5)
    >>> opt = torch.optim.Adam(model.parameters())
    >>> handle = masks.attach(opt)       # handle.remove() detaches
    >>> round(masks.sparsity, 2)
    0.5
    """

    def __init__(self, model: nn.Module, masks: Mapping):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._masks, self._params = {}, {}
        for name, mask in masks.items():
            try:
                param = model.get_parameter(name)
            except AttributeError:
                raise ValueError(f"masks names {name!r}, which is not a parameter of the model") from None
            mask = torch.as_tensor(mask)
            if mask.dtype != torch.bool or mask.shape != param.shape:
                raise ValueError(f"mask for {name!r} must be a bool tensor of shape {tuple(param.shape)}, "
                                 f"got {mask.dtype} of shape {tuple(mask.shape)}")
            mask = mask.to(param.device)
            self._masks[name], self._params[name] = mask, param
        self._bits: dict = {}         # name -> (integer view of the parameter, mask as such integers)
        self._settled = (None, 0)     # (id, size) of the optimizer state last settled

    def rebind(self, model: nn.Module) -> "PruningMasks":
        """The same masks bound to ``model``, e.g. a ``copy.deepcopy`` of the model they
        were made for (same parameter names and shapes), applied to it.

        >>> import copy
        >>> from kdlab import models, prune
        >>> model = models.create("mlp-student")
        >>> masks = prune.magnitude_prune(model, 0.5)
        >>> twin = copy.deepcopy(model)
        >>> twin_masks = masks.rebind(twin)   # attach these to twin's optimizer
        """
        return PruningMasks(model, {n: m.clone() for n, m in self._masks.items()}).apply()

    def __deepcopy__(self, memo) -> "PruningMasks":
        # copy.deepcopy((model, masks)) gives masks bound to the copied model
        return PruningMasks(copy.deepcopy(self.model, memo), {n: m.clone() for n, m in self._masks.items()})

    def _check_optimizer(self, optimizer) -> None:
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if self._params and not any(id(p) in held for p in self._params.values()):
            raise ValueError(
                f"the optimizer holds none of the parameters these masks are bound to (those of the "
                f"{type(self.model).__name__} at {id(self.model):#x}); if it trains a copy of that model, bind "
                "the masks to the copy first: masks = masks.rebind(copy)")

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self):
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    @property
    def sparsity(self) -> float:
        """Fraction of the masked weights that are pruned."""
        total = sum(m.numel() for m in self._masks.values())
        kept = sum(int(m.sum()) for m in self._masks.values())
        return 1.0 - kept / max(total, 1)

    @torch.no_grad()
    def apply(self) -> "PruningMasks":
        """Zero every pruned weight in place and return ``self``.

        ``w <- w AND m`` on the bit patterns (``m`` all ones where kept, all zeros
        where pruned): one pass per tensor, cheap enough to run after every
        optimizer step. Kept weights keep their exact bits and pruned ones become
        ``+0.0`` (``w * 0`` would give ``-0.0`` for negative ``w``, which a sparse
        file has to store as a value).
        """
        for name, param in self._params.items():
            view, bits = self._bits.get(name, (None, None))
            if view is None or view.data_ptr() != param.data_ptr():  # new storage: .to(), .double(), ...
                data = param.detach()
                if bits is None or bits.element_size() != data.element_size() or bits.device != data.device:
                    bits = _bit_mask(self._masks[name], data)
                view = data.view(bits.dtype)
                self._bits[name] = view, bits
            view.bitwise_and_(bits)
        return self

    @torch.no_grad()
    def _settle(self, state: Mapping) -> None:
        """Set the pruned entries of the optimizer state that gets square-rooted
        (Adam's ``exp_avg_sq``, RMSprop's ``square_avg``, Adagrad's ``sum``) to 1."""
        for name, param in self._params.items():
            for key in _ROOTED_STATE:
                tensor = state.get(param, {}).get(key)
                if tensor is not None and tensor.shape == param.shape:
                    tensor.masked_fill_(~self._masks[name], 1.0)

    def _after_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.apply()
        # Settle new state only: optimizers create it at their first step (or on load_state_dict).
        state = optimizer.state
        if self._settled != (id(state), len(state)):
            self._settle(state)
            self._settled = (id(state), len(state))

    def attach(self, optimizer: torch.optim.Optimizer):
        """Re-apply the masks after every ``optimizer.step()``; returns a handle whose
        ``remove()`` detaches them.

        The pruned entries of the optimizer state that gets square-rooted (Adam's
        ``exp_avg_sq``, RMSprop's ``square_avg``, Adagrad's ``sum``) are set to 1
        once, when the optimizer creates them. Why: a pruned weight whose gradient
        is always exactly 0 (its unit was cut off) would leave exact zeros there,
        and PyTorch's CPU ``sqrt`` can be much slower on 0.0 than on other numbers,
        enough to make every Adam step of a pruned model slower than a dense one
        (section 3 of ``benchmarks/results/prune.md`` measures the step times).
        Pruned weights are reset to 0 after every step, so their state never
        reaches a kept weight: kept weights train bit for bit as before.
        """
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self._check_optimizer(optimizer)
        return optimizer.register_step_post_hook(lambda opt, args, kwargs: self._after_step(opt))

    def callback(self) -> Callback:
        """A :class:`kdlab.train.Callback` that applies the masks when training starts
        and after every step: ``fit(model, data, epochs=3, callbacks=[masks.callback()])``
        (settling the optimizer state as :meth:`attach` does)."""
        return _KeepMasks(self)

    def __repr__(self) -> str:
        return f"PruningMasks({len(self)} tensors, sparsity={self.sparsity:.4f})"


class _KeepMasks(Callback):
    def __init__(self, masks: PruningMasks):
        self.masks = masks

    def on_train_start(self, state) -> None:
        self.masks._check_optimizer(state.optimizer)
        self.masks.apply()

    def on_step_end(self, state) -> None:
        self.masks._after_step(state.optimizer)


@torch.no_grad()
def sparsity(model: nn.Module, layers=None) -> dict:
    """Fraction of exact zeros in the prunable weights.

    Returns ``{"global": zeros / weights over all prunable layers,
    "layers": {parameter name: zeros / weights of that layer}}``.

    >>> from kdlab import models, prune
    >>> model = models.create("mlp-student")
    >>> _ = prune.magnitude_prune(model, 0.9, scope="layer")
    >>> round(prune.sparsity(model)["global"], 2)
    0.9
    """
    weights = prunable_weights(model, layers)
    zeros = {n: int((w == 0).sum()) for n, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    return {"global": sum(zeros.values()) / total,
            "layers": {n: zeros[n] / w.numel() for n, w in weights.items()}}


class SparsityLog(Callback):
    """A :func:`kdlab.train.fit` callback that records :func:`sparsity` after every
    epoch: ``values`` holds the global sparsity, ``layers`` the per-layer dicts.

    >>> from kdlab import data, models, prune, train
    >>> model = models.create("mlp-student")
    >>> masks = prune.magnitude_prune(model, 0.5)
    >>> log = prune.SparsityLog()
    >>> _ = train.fit(model, data.load_digits(), epochs=2, callbacks=[masks.callback(), log], progress=False)
    >>> [round(v, 2) for v in log.values]
    [0.5, 0.5]
    """

    def __init__(self, layers=None):
        self.selection = layers
        self.values: list[float] = []
        self.layers: list[dict] = []

    def on_epoch_end(self, state) -> None:
        measured = sparsity(state.model, self.selection)
        self.values.append(measured["global"])
        self.layers.append(measured["layers"])
