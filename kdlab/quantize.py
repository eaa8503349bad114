"""Post-training int8 quantization, and what the quantized model costs on disk.

- :func:`quantize_int8`: dynamic int8 quantization of every ``nn.Linear`` (a copy);
- :func:`quantized_linears`: the quantized Linear layers of a model, by name;
- :func:`quantized_size_bytes`: bytes on disk, dense or with only the non-zero int8
  weights stored (pruning and quantization compose: a zero weight quantizes to
  exactly 0); :func:`sparse_int8_state` is what the sparse file stores.

:func:`kdlab.evaluate.count_parameters` and :func:`kdlab.evaluate.flops` count the
layers of :func:`quantized_linears` too.

>>> from kdlab import models, quantize
>>> q = quantize.quantize_int8(models.create("lenet-300-100"))
>>> sorted(quantize.quantized_linears(q))
['layers.0', 'layers.2', 'layers.4']
"""
from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn

from kdlab import _validate


def quantized_linears(model: nn.Module) -> dict:
    """``{name: layer}`` of the quantized Linear layers of ``model`` (``torch.ao.nn.quantized``,
    dynamic or static): their weights are packed buffers, not parameters, so
    ``model.parameters()`` and ``torch.utils.flop_counter`` do not see them."""
    from torch.ao.nn.quantized import Linear as QuantizedLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}


def quantize_int8(model: nn.Module) -> nn.Module:
    """Post-training dynamic int8 quantization of every ``nn.Linear`` (a quantized copy;
    ``model`` is left as it is).

    Each Linear weight becomes ``q = clamp(round(w / s), -128, 127)`` with one scale
    ``s = max|w| / 127.5`` per tensor (symmetric, zero point 0, so a pruned weight
    stays exactly 0); activations are quantized on the fly at inference. Runs on
    CPU (``torch.ao.quantization.quantize_dynamic``); other layers stay float.

    >>> from kdlab import models
    >>> q = quantize_int8(models.create("mlp-student"))
    >>> type(q.layers[0]).__module__
    'torch.ao.nn.quantized.dynamic.modules.linear'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(f"model has no nn.Linear layer to quantize: {type(model).__name__}")
    float_copy = copy.deepcopy(model).cpu().eval()
    # torch 2.x announces that torch.ao.quantization (and quantized tensor dtypes) will move
    # to the separate torchao package; the eager API is still the one shipped with torch, so
    # the notice is silenced here only, where nothing else can raise it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                                category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(float_copy, {nn.Linear}, dtype=torch.qint8)


def quantized_size_bytes(qmodel: nn.Module, *, sparse: bool = False) -> int:
    """Bytes on disk of a :func:`quantize_int8` model.

    ``sparse=False``: ``torch.save(qmodel.state_dict())`` (1 byte per weight plus
    float biases and one scale per layer). ``sparse=True``: each int8 weight as a
    bitmask of its non-zeros (n/8 bytes) plus the non-zero int8 values, the scale
    and zero point and the float bias (dense int8 where that is smaller); float
    tensors of other layers as in :func:`kdlab.prune.save_sparse`. At sparsity s an
    n-weight layer costs about ``n/8 + (1 - s) n`` bytes instead of ``n``.

    >>> from kdlab import models
    >>> q = quantize_int8(models.create("lenet-300-100"))
    >>> quantized_size_bytes(q) < 266_200 // 3
    True
    """
    if not isinstance(qmodel, nn.Module):
        raise TypeError(f"qmodel must be an nn.Module, got {type(qmodel).__name__}")
    if not quantized_linears(qmodel):
        raise ValueError("qmodel has no quantized Linear layer; pass quantize_int8(model)")
    sparse = bool(_validate.choice("sparse", sparse, (True, False)))
    buffer = io.BytesIO()
    torch.save(sparse_int8_state(qmodel) if sparse else qmodel.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def sparse_int8_state(qmodel: nn.Module) -> dict:
    """What ``quantized_size_bytes(qmodel, sparse=True)`` stores: per quantized Linear
    ``{"shape", "bits", "values" (int8 non-zeros), "scale", "zero_point", "bias"}``
    (or the dense int8 ``"weight"`` where the bitmask would not save bytes),
    and the other float tensors of the state_dict encoded as in
    :func:`kdlab.prune.save_sparse`."""
    from kdlab.prune.sparse_io import encode_sparse, pack_mask

    linears = quantized_linears(qmodel)
    state = {}
    for name, m in linears.items():
        w = m.weight()
        q = w.int_repr()
        mask = q != 0
        entry = {"scale": float(w.q_scale()), "zero_point": int(w.q_zero_point()),
                 "bias": None if m.bias() is None else m.bias().detach()}
        if (q.numel() + 7) // 8 + int(mask.sum()) < q.numel():
            entry.update(shape=list(q.shape), bits=pack_mask(mask), values=q[mask])
        else:  # too dense for the bitmask to pay off
            entry.update(weight=q)
        state[name] = entry
    prefixes = tuple(f"{n}." for n in linears)
    for key, t in qmodel.state_dict().items():
        if not key.startswith(prefixes) and isinstance(t, torch.Tensor):
            state[key] = encode_sparse(t)
    return state
