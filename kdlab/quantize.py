"""Quantization: int8 (dynamic, static, quantization-aware), int4 weights, and what
the quantized model costs on disk.

Affine quantization maps a float ``x`` to an integer ``q`` in ``[qmin, qmax]`` with a
scale ``s`` and a zero point ``z``: ``q = clamp(round(x / s) + z, qmin, qmax)`` and back
``x_hat = s (q - z)`` (:func:`affine_qparams`).

- :func:`quantize_int8`: dynamic int8 quantization of every ``nn.Linear`` (a copy);
  activations are quantized on the fly, per batch;
- :func:`static_int8`: static int8 (weights and activations), the activation ranges
  observed once on calibration data; per-tensor or per-channel weights; built from
  :func:`prepare`, :func:`calibrate` and :func:`convert`;
- :func:`prepare_qat`: quantization-aware training, fake quantization with a
  straight-through estimator, trained with :func:`kdlab.train.fit`, then :func:`convert`;
- :func:`weight_error`: the relative error of quantizing a weight, per tensor or per channel;
- :func:`quantize_int4`: weight-only int4 in groups (:class:`Int4Linear`,
  :func:`pack_int4`, :func:`unpack_int4`);
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

import contextlib
import copy
import io
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from kdlab import _validate
from kdlab.train import deterministic_algorithms


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


# --- affine quantization: the formula --------------------------------------------------------------


def affine_qparams(min_val, max_val, *, qmin: int = 0, qmax: int = 255, symmetric: bool = False):
    """Scale and zero point that map the observed range ``[min_val, max_val]`` onto the
    integers ``[qmin, qmax]`` (Jacob et al. 2018), as torch's observers compute them.

    The range is first widened to hold 0, ``lo = min(min_val, 0)``, ``hi = max(max_val, 0)``,
    so that 0 (a ReLU output, padding, a pruned weight) is represented exactly. Then

    - affine: ``s = (hi - lo) / (qmax - qmin)``, ``z = qmin - round(lo / s)`` (clamped to
      ``[qmin, qmax]``);
    - symmetric: ``s = max(-lo, hi) / ((qmax - qmin) / 2)``, ``z = 0`` (signed ``qmin = -qmax - 1``).

    A quantized value is ``q = clamp(round(x / s) + z, qmin, qmax)``, read back as
    ``s (q - z)``, off by at most ``s / 2`` inside the range. Tensors give one scale and
    zero point per element (per channel); ``s`` is at least ``torch.finfo(float32).eps``.

    >>> affine_qparams(-1.0, 3.0)               # uint8: 4 / 255 per step, 0 at code 64
    (0.01568627543747425, 64)
    >>> affine_qparams(-0.5, 2.0, qmin=-128, qmax=127, symmetric=True)
    (0.01568627543747425, 0)
    """
    for name, v in (("qmin", qmin), ("qmax", qmax)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an integer, got {v!r} ({type(v).__name__})")
    if qmin >= qmax:
        raise ValueError(f"qmin must be smaller than qmax, got qmin={qmin}, qmax={qmax}")
    symmetric = bool(_validate.choice("symmetric", symmetric, (True, False)))
    scalar = not isinstance(min_val, torch.Tensor) and not isinstance(max_val, torch.Tensor)
    lo = torch.as_tensor(min_val, dtype=torch.float32)
    hi = torch.as_tensor(max_val, dtype=torch.float32)
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError(f"min_val and max_val must be finite, got {min_val!r} and {max_val!r}")
    if (lo > hi).any():
        raise ValueError(f"min_val must be <= max_val, got min_val={min_val!r}, max_val={max_val!r}")
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    eps = torch.finfo(torch.float32).eps
    if symmetric:
        scale = (torch.maximum(-lo, hi) / ((qmax - qmin) / 2)).clamp(min=eps)
        zero = torch.zeros_like(scale, dtype=torch.int64)
    else:
        scale = ((hi - lo) / float(qmax - qmin)).clamp(min=eps)
        zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int64)
    return (float(scale), int(zero)) if scalar else (scale, zero)


def weight_error(weight: torch.Tensor, *, per_channel: bool = True, bits: int = 8) -> float:
    """Relative error ``||w - w_hat|| / ||w||`` of symmetric ``bits``-bit quantization of a
    weight, with one scale for the whole tensor (``per_channel=False``) or one per output
    channel (row ``i``: ``s_i = max_j |w_ij| / (2^(bits-1) - 1/2)``), as :func:`static_int8`
    stores it. One large row sets the per-tensor scale for every row; per channel, each
    row gets the steps its own range needs (Nagel et al. 2021, section 3.1)."""
    weight = _validate.float_tensor("weight", weight, "a weight")
    if weight.ndim < 2:
        raise ValueError(f"weight must have an output-channel dimension (ndim >= 2), got shape {tuple(weight.shape)}")
    per_channel = bool(_validate.choice("per_channel", per_channel, (True, False)))
    bits = _bits("bits", bits)
    w = weight.detach().float()
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    dims = tuple(range(1, w.ndim))
    if per_channel:
        scale, zero = affine_qparams(w.amin(dims), w.amax(dims), qmin=qmin, qmax=qmax, symmetric=True)
        w_hat = torch.fake_quantize_per_channel_affine(w, scale, zero.to(torch.int32), 0, qmin, qmax)
    else:
        scale, zero = affine_qparams(float(w.min()), float(w.max()), qmin=qmin, qmax=qmax, symmetric=True)
        w_hat = torch.fake_quantize_per_tensor_affine(w, scale, zero, qmin, qmax)
    return float(torch.linalg.vector_norm(w - w_hat) / torch.linalg.vector_norm(w).clamp(min=1e-12))


def _bits(name: str, bits) -> int:
    bits = _validate.positive_int(name, bits)
    if not 2 <= bits <= 8:
        raise ValueError(f"{name} must be an integer in [2, 8], got {bits!r}")
    return bits


# --- static int8 and quantization-aware training (torch.ao eager mode) ------------------------------

# Activations: uint8 codes 0..127. On x86 (fbgemm) the int8 matmul adds pairs of uint8 x int8
# products in int16, which saturates with full-range 0..255 activations; the 7-bit range cannot.
ACTIVATION_QMIN, ACTIVATION_QMAX = 0, 127


@contextlib.contextmanager
def _quantized_kernels_allowed():
    # kdlab.train.seed_everything turns on deterministic algorithms (warn only); the quantized
    # kernels resize their output with an op that has no deterministic flag and would warn on
    # every call. Their results do not depend on it (fixed threads give identical outputs).
    on = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if on:
        deterministic_algorithms(False, warn_only=warn_only)
    try:
        yield
    finally:
        if on:
            deterministic_algorithms(True, warn_only=warn_only)


@contextlib.contextmanager
def _ao():
    # torch 2.x announces that torch.ao.quantization will move to the separate torchao package;
    # the eager API is still the one shipped with torch (see quantize_int8).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*(observer|reduce_range|FakeQuantize).*", category=UserWarning)
        import torch.ao.quantization as tq

        yield tq


class QuantizedModel(nn.Module):
    """``model`` between a quantize step (float input -> uint8) and a dequantize step
    (the float logits), the form :func:`prepare`, :func:`prepare_qat` and :func:`convert`
    work on. ``module`` is the model itself (fused, observed, fake-quantized or int8)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant, self.module, self.dequant = QuantStub(), model, DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _quantized_kernels_allowed():
            return self.dequant(self.module(self.quant(x)))


def _fusable(model: nn.Module) -> list:
    """Names of the ``[Linear, ReLU]``, ``[Conv, BatchNorm, ReLU]``, ``[Conv, BatchNorm]`` and
    ``[Conv, ReLU]`` runs inside the model's ``nn.Sequential`` containers."""
    patterns = ((nn.Conv2d, nn.BatchNorm2d, nn.ReLU), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv2d, nn.ReLU),
                (nn.Linear, nn.ReLU), (nn.Conv1d, nn.BatchNorm1d, nn.ReLU), (nn.Conv1d, nn.ReLU))
    runs = []
    for name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children, i = list(seq.named_children()), 0
        while i < len(children):
            for pattern in patterns:
                window = children[i:i + len(pattern)]
                if len(window) == len(pattern) and all(type(m) is t for (_, m), t in zip(window, pattern)):
                    runs.append([f"{name}.{n}" if name else n for n, _ in window])
                    i += len(pattern) - 1
                    break
            i += 1
    return runs


def _qconfig(tq, per_channel: bool, weight_bits: int, qat: bool):
    wmin, wmax = -(2 ** (weight_bits - 1)), 2 ** (weight_bits - 1) - 1
    weight_observer = (tq.PerChannelMinMaxObserver.with_args(ch_axis=0, qscheme=torch.per_channel_symmetric)
                       if per_channel else tq.MinMaxObserver.with_args(qscheme=torch.per_tensor_symmetric))
    weight = dict(dtype=torch.qint8, quant_min=wmin, quant_max=wmax)
    act = dict(dtype=torch.quint8, quant_min=ACTIVATION_QMIN, quant_max=ACTIVATION_QMAX,
               qscheme=torch.per_tensor_affine)
    if qat:
        return tq.QConfig(activation=tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver, **act),
                          weight=tq.FakeQuantize.with_args(observer=weight_observer, **weight))
    return tq.QConfig(activation=tq.MinMaxObserver.with_args(**act), weight=weight_observer.with_args(**weight))


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(f"model has no nn.Linear layer to quantize: {type(model).__name__}")


def _wrap(model: nn.Module, *, per_channel, weight_bits, qat: bool) -> QuantizedModel:
    _check_model(model)
    per_channel = bool(_validate.choice("per_channel", per_channel, (True, False)))
    weight_bits = _bits("weight_bits", weight_bits)
    with _ao() as tq:
        float_copy = copy.deepcopy(model).cpu().train(qat)
        runs = _fusable(float_copy)
        if runs:
            float_copy = (tq.fuse_modules_qat if qat else tq.fuse_modules)(float_copy, runs)
        wrapped = QuantizedModel(float_copy).train(qat)
        wrapped.qconfig = _qconfig(tq, per_channel, weight_bits, qat)
        return (tq.prepare_qat if qat else tq.prepare)(wrapped)


def prepare(model: nn.Module, *, per_channel: bool = True, weight_bits: int = 8) -> QuantizedModel:
    """A float copy of ``model`` with observers that record the range of every weight and
    every layer's output (min/max), ready for :func:`calibrate` and then :func:`convert`.
    Linear-ReLU and Conv-BatchNorm-ReLU runs inside ``nn.Sequential`` are fused first, so
    the ReLU's output, not the Linear's, is what gets quantized. Options as in :func:`static_int8`."""
    return _wrap(model, per_channel=per_channel, weight_bits=weight_bits, qat=False).eval()


def calibrate(model: nn.Module, calibration_data, *, batches: int | None = None,
              batch_size: int = 256) -> nn.Module:
    """Run ``calibration_data`` through ``model`` in eval mode without gradients, so that
    its observers (:func:`prepare`) or fake-quantize modules (:func:`prepare_qat`) record
    the ranges. ``calibration_data``: input tensor ``x``, an ``(x, y)`` tuple or a DataLoader
    of ``(x, y)`` batches; held-out data, never the test set. ``batches``: at most this many
    batches of ``batch_size`` (``None``: all of it). Returns ``model``."""
    from kdlab.data import Split
    from kdlab.train import as_loader

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if batches is not None:
        batches = _validate.positive_int("batches", batches)
    batch_size = _validate.positive_int("batch_size", batch_size)
    if isinstance(calibration_data, Split):
        raise TypeError("calibration_data must be inputs, an (x, y) tuple or a DataLoader; for a Split "
                        "pass a held-out part, e.g. split.val")
    if isinstance(calibration_data, torch.Tensor):
        xs = list(calibration_data.split(batch_size))
    else:
        loader = as_loader(calibration_data, batch_size=batch_size, shuffle=False, name="calibration_data")
        xs = (batch[0] for batch in loader)
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for i, x in enumerate(xs):
                if batches is not None and i >= batches:
                    break
                if len(x):
                    model(x.to(device))
                    seen += 1
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError("calibration_data is empty: no batch to observe")
    return model


def convert(model: QuantizedModel) -> QuantizedModel:
    """The int8 model from a calibrated :func:`prepare` model or a trained :func:`prepare_qat`
    model (a copy): weights quantized with their observed scales, every layer computing in
    int8 with the activation scale and zero point it observed (``torch.ao`` quantized
    modules, run by the x86/fbgemm kernels on this CPU)."""
    if not isinstance(model, QuantizedModel):
        raise TypeError(f"model must come from quantize.prepare or quantize.prepare_qat, got {type(model).__name__}")
    with _ao() as tq:
        return tq.convert(copy.deepcopy(model).cpu().eval())


def static_int8(model: nn.Module, calibration_data, *, per_channel: bool = True, weight_bits: int = 8,
                batches: int | None = None, batch_size: int = 256) -> QuantizedModel:
    """Post-training static quantization: int8 weights AND activations (a copy).

    Every layer's output range ``[min, max]`` is observed on ``calibration_data``
    (:func:`calibrate`) and fixed: ``s = (max - min) / (qmax - qmin)``,
    ``z = qmin - round(min / s)`` with ``qmin, qmax = 0, 127`` (uint8 codes, 7 bits for
    x86's int16 accumulation; :func:`affine_qparams`). Weights are symmetric,
    ``s = max|w| / (2^(b-1) - 1/2)``, ``z = 0`` (a pruned weight stays 0), with one scale
    per tensor or per output channel (``per_channel``). Inference then runs in integers:
    ``y_q = z_y + (s_x s_w / s_y) * sum_k (x_q - z_x) w_q`` (Jacob et al. 2018), with no
    range computed at run time, unlike :func:`quantize_int8`.

    Args:
        model: a float model whose layers torch.ao quantizes (Linear, Conv, ReLU, pooling,
            flatten; no residual additions); it is left as it is.
        calibration_data: held-out inputs (see :func:`calibrate`).
        per_channel: one weight scale per output channel (True) or per tensor.
        weight_bits: 2..8; below 8 the int8 codes are restricted to
            ``[-2^(b-1), 2^(b-1) - 1]`` (simulates b-bit weights; the file stays 1 byte per weight).
        batches, batch_size: how much of ``calibration_data`` to observe.

    >>> from kdlab import models
    >>> q = static_int8(models.create("mlp-student"), torch.randn(32, 64))
    >>> type(q.module.layers[0]).__name__
    'LinearReLU'
    """
    prepared = prepare(model, per_channel=per_channel, weight_bits=weight_bits)
    return convert(calibrate(prepared, calibration_data, batches=batches, batch_size=batch_size))


def prepare_qat(model: nn.Module, *, per_channel: bool = True, weight_bits: int = 8) -> QuantizedModel:
    """A float copy of ``model`` for quantization-aware training (Jacob et al. 2018): every
    weight and every layer output passes through fake quantization, quantize then dequantize
    in float, ``x_hat = s (clamp(round(x / s) + z, qmin, qmax) - z)``, so the loss sees the
    rounding. ``round`` has zero gradient almost everywhere; the straight-through estimator
    passes the gradient through where ``x`` is inside the range and blocks it where it was
    clamped: ``d x_hat / d x = 1`` if ``qmin <= round(x / s) + z <= qmax``, else 0.
    Activation ranges follow a moving average of each batch's min/max, weight ranges the
    current weights. Train it with :func:`kdlab.train.fit`, then :func:`convert`. Options as in
    :func:`static_int8`; ``torch.ao.quantization.disable_observer`` freezes the ranges.

    >>> from kdlab import data, models, train
    >>> qat = prepare_qat(models.create("mlp-student"))
    >>> _ = train.fit(qat, data.load_digits(), epochs=1, progress=False)
    >>> type(convert(qat).module.layers[0]).__name__
    'LinearReLU'
    """
    return _wrap(model, per_channel=per_channel, weight_bits=weight_bits, qat=True)


# --- weight-only int4 --------------------------------------------------------------------------------


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte: ``codes`` (integers in [0, 15], last dimension even) ->
    uint8 with the last dimension halved, element ``2i`` in the low nibble and ``2i + 1``
    in the high one. :func:`unpack_int4` inverts it exactly."""
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex():
        raise TypeError(f"codes must be an integer tensor, got {type(codes).__name__}"
                        f"{'' if not isinstance(codes, torch.Tensor) else f' of {codes.dtype}'}")
    if codes.ndim == 0 or codes.shape[-1] % 2:
        raise ValueError(f"codes must have an even last dimension, got shape {tuple(codes.shape)}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > 15):
        raise ValueError(f"codes must be in [0, 15], got values in [{int(codes.min())}, {int(codes.max())}]")
    c = codes.to(torch.uint8)
    return c[..., 0::2] | (c[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The uint8 codes in [0, 15] stored by :func:`pack_int4` (last dimension doubled)."""
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 tensor from pack_int4, got "
                        f"{packed.dtype if isinstance(packed, torch.Tensor) else type(packed).__name__}")
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(-2)


class Int4Linear(nn.Module):
    """A Linear layer whose weight is stored as asymmetric 4-bit codes in groups of
    ``group_size`` consecutive inputs: group ``g`` of row ``i`` has its own
    ``s, z = affine_qparams(min, max, qmin=0, qmax=15)``, ``q = clamp(round(w / s) + z, 0, 15)``.
    Stored: the packed codes (half a byte per weight), a float32 scale and a uint8 zero
    point per group, the float bias.

    ``kernel=False``: the forward pass dequantizes ``w_hat = s (q - z)`` and runs a float
    matmul, so the saving is in bytes, not in time. ``kernel=True``: torch's CPU int4 kernel
    (``torch.ops.aten._weight_int4pack_mm_for_cpu``, which reads the packed codes directly)
    with bfloat16 activations, where the layer allows it (``out_features`` a multiple of 16,
    ``group_size`` in 32, 64, 128, 256; :attr:`uses_kernel` says); the outputs then differ
    from the float matmul by bfloat16 rounding."""

    KERNEL_GROUPS = (32, 64, 128, 256)

    def __init__(self, in_features: int, out_features: int, *, group_size: int = 32, bias: bool = True,
                 kernel: bool = False):
        super().__init__()
        self.kernel = bool(_validate.choice("kernel", kernel, (True, False)))
        if self.kernel and not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
            raise ValueError(f"kernel=True needs torch's CPU int4 kernel (_weight_int4pack_mm_for_cpu), which "
                             f"torch {torch.__version__} lacks; use kernel=False")
        self._kernel_args = None
        self.in_features = _validate.positive_int("in_features", in_features)
        self.out_features = _validate.positive_int("out_features", out_features)
        self.group_size = _validate.positive_int("group_size", group_size)
        if group_size % 2 or in_features % group_size:
            raise ValueError(f"group_size must be even and divide in_features={in_features}, got {group_size}")
        groups = in_features // group_size
        self.register_buffer("packed", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(out_features, groups))
        self.register_buffer("zero_point", torch.zeros(out_features, groups, dtype=torch.uint8))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @property
    def uses_kernel(self) -> bool:
        """Whether the forward pass runs torch's int4 kernel (``kernel=True`` and a shape it takes)."""
        return self.kernel and self.out_features % 16 == 0 and self.group_size in self.KERNEL_GROUPS

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, group_size: int = 32, kernel: bool = False) -> "Int4Linear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, group_size=group_size, bias=linear.bias is not None,
                    kernel=kernel)
        w = linear.weight.detach().float().cpu().reshape(linear.out_features, -1, group_size)
        scale, zero = affine_qparams(w.amin(-1), w.amax(-1), qmin=0, qmax=15)
        codes = (torch.round(w / scale[..., None]) + zero[..., None]).clamp(0, 15)
        layer.packed.copy_(pack_int4(codes.reshape(linear.out_features, -1).to(torch.uint8)))
        layer.scale.copy_(scale)
        layer.zero_point.copy_(zero.to(torch.uint8))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float().cpu())
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        codes = unpack_int4(self.packed).reshape(self.out_features, -1, self.group_size).float()
        w = (codes - self.zero_point[..., None].float()) * self.scale[..., None]
        return w.reshape(self.out_features, self.in_features)

    def _load_from_state_dict(self, *args, **kwargs):
        self._kernel_args = None      # new codes: torch's packed layout is rebuilt on the next call
        super()._load_from_state_dict(*args, **kwargs)

    def _kernel_inputs(self):
        # torch's layout: its own packing of the codes, and [groups, out, 2] (scale, offset) with
        # w = (q - 8) s + offset, so offset = (8 - z) s gives w = s (q - z).
        if self._kernel_args is None:
            codes = unpack_int4(self.packed).to(torch.int32)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
            offset = (8 - self.zero_point.float()) * self.scale
            scales = torch.stack([self.scale.t(), offset.t()], -1).contiguous().to(torch.bfloat16)
            self._kernel_args = (packed, scales)
        return self._kernel_args

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_kernel:
            return F.linear(x, self.dequantized_weight(), self.bias)
        packed, scales = self._kernel_inputs()
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, packed, self.group_size, scales).to(x.dtype)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"kernel={self.uses_kernel}")


def quantize_int4(model: nn.Module, *, group_size: int = 32, kernel: bool = False) -> nn.Module:
    """Weight-only int4 (a copy): every ``nn.Linear`` becomes an :class:`Int4Linear` with
    groups of ``group_size`` inputs (which must divide each layer's ``in_features``);
    activations and other layers stay float. About ``1/2 + 5/group_size`` bytes per weight
    (codes, scale, zero point) instead of 4. ``kernel=True`` runs torch's CPU int4 kernel
    with bfloat16 activations in the layers whose shape it takes (see :class:`Int4Linear`)."""
    _check_model(model)
    group_size = _validate.positive_int("group_size", group_size)
    kernel = bool(_validate.choice("kernel", kernel, (True, False)))
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and (group_size % 2 or m.in_features % group_size):
            raise ValueError(f"group_size must be even and divide every Linear's in_features; {name} has "
                             f"in_features={m.in_features}, got group_size={group_size}")
    q = copy.deepcopy(model).cpu().eval()
    for name, m in list(q.named_modules()):
        if isinstance(m, nn.Linear):
            parent, _, child = name.rpartition(".")
            int4 = Int4Linear.from_linear(m, group_size=group_size, kernel=kernel)
            setattr(q.get_submodule(parent) if parent else q, child, int4)
    return q
