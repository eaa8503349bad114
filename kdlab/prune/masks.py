"""Which weights are prunable, the masks that keep them pruned, and sparsity.

A mask is a bool tensor of a parameter's shape, ``True`` where the weight is
kept. :class:`PruningMasks` zeroes the pruned entries in place and keeps them at
zero while training by re-applying itself after every optimizer step. No forward
hook is registered and no parameter is renamed, so ``copy.deepcopy``,
``torch.save``/``load`` and ``torch.export`` see an ordinary model whose pruned
weights are exact zeros.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from kdlab.train import Callback

PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)


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


class PruningMasks(Mapping):
    """Read-only mapping ``parameter name -> bool mask`` (``True`` = kept), bound to a model.

    Args:
        model: the model whose parameters the masks refer to.
        masks: ``{name: bool tensor}`` with the shapes of ``model.get_parameter(name)``.

    ``apply()`` zeroes the pruned weights: w <- w * m. Optimizers with momentum,
    Adam moments or weight decay move zeroed weights again, so the masks must be
    re-applied after every step: ``attach(optimizer)`` does that with an optimizer
    step post-hook, ``callback()`` does it inside :func:`kdlab.train.fit`.

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
        self._masks, self._keep, self._params = {}, {}, {}
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
            # Masks in the parameter's dtype let one fused multiply re-apply them all.
            self._masks[name], self._keep[name], self._params[name] = mask, mask.to(param.dtype), param

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
        """Zero every pruned weight in place (w <- w * m, one fused ``_foreach_mul_``,
        cheap enough to run after every optimizer step); returns ``self``."""
        if self._params:
            params = list(self._params.values())
            torch._foreach_mul_(params, list(self._keep.values()))
            torch._foreach_add_(params, 0.0)  # -w * 0 is -0.0; adding +0.0 makes it +0.0
        return self

    def attach(self, optimizer: torch.optim.Optimizer):
        """Re-apply the masks after every ``optimizer.step()``; returns a handle whose
        ``remove()`` detaches them."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        return optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply())

    def callback(self) -> Callback:
        """A :class:`kdlab.train.Callback` that applies the masks when training starts
        and after every step: ``fit(model, data, epochs=3, callbacks=[masks.callback()])``."""
        return _KeepMasks(self)

    def __repr__(self) -> str:
        return f"PruningMasks({len(self)} tensors, sparsity={self.sparsity:.4f})"


class _KeepMasks(Callback):
    def __init__(self, masks: PruningMasks):
        self.masks = masks

    def on_train_start(self, state) -> None:
        self.masks.apply()

    def on_step_end(self, state) -> None:
        self.masks.apply()


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
