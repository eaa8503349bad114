"""Static int8 with calibration, per-channel weights, quantization-aware training and
weight-only int4, checked against the formulas written out here."""
import copy
import warnings

import pytest
import torch
from torch import nn

from kdlab import data, evaluate, models, prune, quantize, train


def _affine(lo, hi, qmin, qmax):
    """s = (max - min) / (qmax - qmin), z = qmin - round(min / s), the range widened to hold 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = (hi - lo) / (qmax - qmin)
    return s, int(min(max(qmin - round(lo / s), qmin), qmax))


@pytest.mark.parametrize("lo, hi, qmin, qmax", [(-1.0, 3.0, 0, 255), (0.2, 5.0, 0, 127), (-7.5, -0.5, 0, 15),
                                                (-2.0, 0.3, -128, 127)])
def test_affine_qparams_is_the_formula_and_what_torch_observers_compute(lo, hi, qmin, qmax):
    s, z = quantize.affine_qparams(lo, hi, qmin=qmin, qmax=qmax)
    s_ref, z_ref = _affine(lo, hi, qmin, qmax)
    assert s == pytest.approx(s_ref, rel=1e-6) and z == z_ref
    dtype = torch.qint8 if qmin < 0 else torch.quint8
    obs = torch.ao.quantization.MinMaxObserver(dtype=dtype, quant_min=qmin, quant_max=qmax)
    obs(torch.tensor([lo, hi]))
    s_t, z_t = obs.calculate_qparams()
    assert s == pytest.approx(float(s_t), rel=1e-6) and z == int(z_t)


def test_affine_qparams_symmetric_and_per_channel():
    s, z = quantize.affine_qparams(-0.5, 2.0, qmin=-128, qmax=127, symmetric=True)
    assert s == pytest.approx(2.0 / 127.5) and z == 0
    lo, hi = torch.tensor([-1.1, 0.5, -3.0]), torch.tensor([1.0, 2.0, -1.0])
    scale, zero = quantize.affine_qparams(lo, hi)
    for i in range(3):
        s_ref, z_ref = _affine(float(lo[i]), float(hi[i]), 0, 255)
        assert float(scale[i]) == pytest.approx(s_ref, rel=1e-6) and int(zero[i]) == z_ref


@pytest.fixture(scope="module")
def calibrated(split, teacher):
    return quantize.static_int8(teacher, split.x_train[:300]), quantize.static_int8(teacher, split.x_train[:300], per_channel=False)


def test_static_int8_scales_are_the_formula_on_the_calibration_ranges(split, teacher, calibrated):
    q, _ = calibrated
    x = split.x_train[:300]
    s, z = _affine(float(x.min()), float(x.max()), quantize.ACTIVATION_QMIN, quantize.ACTIVATION_QMAX)
    assert float(q.quant.scale) == pytest.approx(s, rel=1e-5) and int(q.quant.zero_point) == z
    with torch.no_grad():                       # the first Linear-ReLU's output range, observed by hand
        h = torch.relu(teacher.layers[0](x))
    s, z = _affine(float(h.min()), float(h.max()), quantize.ACTIVATION_QMIN, quantize.ACTIVATION_QMAX)
    assert q.module.layers[0].scale == pytest.approx(s, rel=1e-4) and q.module.layers[0].zero_point == z == 0
    w, w_q = teacher.layers[0].weight.detach(), q.module.layers[0].weight()
    row_scale = w.abs().amax(1) / 127.5                       # symmetric, one scale per output row
    assert torch.allclose(w_q.q_per_channel_scales().float(), row_scale, rtol=1e-5)
    # q = clamp(round(w / s)); the kernel multiplies by the float32 inverse 1 / s
    expected = torch.clamp(torch.round(w * (1 / row_scale)[:, None]), -128, 127)
    assert torch.equal(w_q.int_repr().float(), expected)


def test_static_int8_computes_close_to_float(split, teacher, calibrated):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for q in calibrated:
            logits, ref = evaluate.predict(q, split.x_test), evaluate.predict(teacher, split.x_test)
            assert (logits.argmax(1) == ref.argmax(1)).float().mean() > 0.97
            assert (logits - ref).abs().mean() < 0.05 * ref.abs().mean()
    assert len(quantize.quantized_linears(calibrated[0])) == 2
    assert evaluate.model_size_bytes(calibrated[0]) < 0.6 * evaluate.model_size_bytes(teacher)


def test_per_channel_beats_per_tensor_on_rows_of_very_different_ranges():
    torch.manual_seed(0)
    layer = nn.Linear(32, 8)
    with torch.no_grad():
        layer.weight.mul_(torch.logspace(-3, 0, 8)[:, None])      # row ranges 1000x apart
    w = layer.weight.detach()
    e_channel = quantize.weight_error(w, per_channel=True)
    e_tensor = quantize.weight_error(w, per_channel=False)
    assert e_channel < e_tensor / 2
    x = torch.randn(64, 32)
    model = nn.Sequential(layer)
    errors = {}
    for per_channel in (True, False):
        q = quantize.static_int8(model, x, per_channel=per_channel)
        w_hat = q.module[0].weight().dequantize()
        errors[per_channel] = float((w - w_hat).norm() / w.norm())
        assert errors[per_channel] == pytest.approx(quantize.weight_error(w, per_channel=per_channel), rel=1e-5)
    assert errors[True] < errors[False] / 2


def test_weight_error_fewer_bits_more_error():
    w = torch.randn(16, 16, generator=torch.Generator().manual_seed(1))
    errors = [quantize.weight_error(w, bits=b) for b in (8, 6, 4, 2)]
    assert errors == sorted(errors) and errors[0] < 0.01


def test_static_int8_keeps_pruned_weights_zero(teacher, split):
    model = copy.deepcopy(teacher)
    prune.magnitude_prune(model, 0.8)
    q = quantize.static_int8(model, split.x_train[:300], per_channel=False)
    for i in (0, 2):
        assert torch.equal(q.module.layers[i].weight().int_repr() == 0, model.layers[i].weight == 0)


def test_fake_quantize_straight_through_gradient_is_one_inside_the_range_and_zero_outside(split, teacher):
    qat = quantize.prepare_qat(teacher)
    quantize.calibrate(qat, split.x_train[:300])
    qat.apply(torch.ao.quantization.disable_observer)
    fq = qat.quant.activation_post_process
    s, z = float(fq.scale), int(fq.zero_point)
    lo, hi = s * (0 - z), s * (127 - z)
    x = torch.tensor([lo - 1.0, lo - 0.6 * s, lo + 0.3 * s, (lo + hi) / 2, hi - 0.2 * s, hi + 0.6 * s, hi + 2.0],
                     requires_grad=True)
    y = fq(x)
    expected = s * (torch.clamp(torch.round(x.detach() / s) + z, 0, 127) - z)
    assert torch.allclose(y.detach(), expected, atol=1e-6)
    y.sum().backward()
    inside = (torch.round(x.detach() / s) + z >= 0) & (torch.round(x.detach() / s) + z <= 127)
    assert torch.equal(x.grad, inside.float())
    assert inside.tolist() == [False, False, True, True, True, False, False]


def test_qat_trains_with_fit_and_converts_to_the_model_it_simulated(split, teacher):
    qat = quantize.prepare_qat(teacher, per_channel=False)
    train.fit(qat, split.train, epochs=1, lr=1e-4, seed=0, progress=False)
    q = quantize.convert(qat)
    assert type(q.module.layers[0]).__name__ == "LinearReLU"
    fake, real = evaluate.predict(qat, split.x_test), evaluate.predict(q, split.x_test)
    assert (fake.argmax(1) == real.argmax(1)).float().mean() > 0.98
    assert evaluate.accuracy(q, split.test) > evaluate.accuracy(teacher, split.test) - 0.03


def test_weight_bits_restrict_the_codes(teacher, split):
    q = quantize.static_int8(teacher, split.x_train[:300], weight_bits=4)
    codes = q.module.layers[2].weight().int_repr()
    assert int(codes.min()) >= -8 and int(codes.max()) <= 7 and int(codes.max()) == 7


def test_static_int8_quantizes_a_cnn():
    torch.manual_seed(0)
    cnn = models.create("cnn-student", input_shape=(1, 8, 8)).eval()
    x = torch.randn(32, 1, 8, 8)
    q = quantize.static_int8(cnn, x)
    with torch.no_grad():
        assert (q(x) - cnn(x)).abs().max() < 0.05


def test_pack_unpack_int4_round_trip_is_exact():
    codes = torch.randint(0, 16, (5, 12), generator=torch.Generator().manual_seed(0))
    packed = quantize.pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 6)
    assert torch.equal(quantize.unpack_int4(packed), codes.to(torch.uint8))
    assert int(quantize.pack_int4(torch.tensor([3, 12]))) == 3 + 16 * 12      # low nibble first


def test_int4_linear_error_is_at_most_half_a_step_per_weight():
    torch.manual_seed(0)
    layer = nn.Linear(64, 6)
    with torch.no_grad():
        layer.weight[0] += 5.0                                     # a group that does not hold 0
    q = quantize.Int4Linear.from_linear(layer, group_size=16)
    w = layer.weight.detach().view(6, 4, 16)
    lo, hi = w.amin(-1).clamp(max=0), w.amax(-1).clamp(min=0)
    scale = (hi - lo) / 15
    assert torch.allclose(q.scale, scale, rtol=1e-6)
    assert torch.equal(q.zero_point.long(), torch.round(-lo / scale).long())
    err = (q.dequantized_weight().view(6, 4, 16) - w).abs()
    assert (err <= scale[..., None] / 2 * (1 + 1e-5)).all()
    x = torch.randn(3, 64)
    assert torch.allclose(q(x), nn.functional.linear(x, q.dequantized_weight(), layer.bias), atol=1e-6)


def test_quantize_int4_model_size_and_accuracy(split, teacher):
    q = quantize.quantize_int4(teacher, group_size=32)
    assert sum(isinstance(m, quantize.Int4Linear) for m in q.modules()) == 2
    n = sum(w.numel() for w in prune.prunable_weights(teacher).values())
    assert evaluate.model_size_bytes(q) < n * (0.5 + 5 / 32) + 20_000
    assert evaluate.accuracy(q, split.test) > evaluate.accuracy(teacher, split.test) - 0.03
    assert type(teacher.layers[0]) is nn.Linear                   # the float model is untouched


def test_bad_input():
    mlp = models.create("mlp-student")
    with pytest.raises(ValueError, match="qmin must be smaller than qmax"):
        quantize.affine_qparams(0.0, 1.0, qmin=255, qmax=0)
    with pytest.raises(ValueError, match="min_val must be <= max_val"):
        quantize.affine_qparams(1.0, 0.0)
    with pytest.raises(TypeError, match="qmax must be an integer"):
        quantize.affine_qparams(0.0, 1.0, qmax=255.0)
    with pytest.raises(ValueError, match="per_channel must be one of"):
        quantize.static_int8(mlp, torch.zeros(2, 64), per_channel="yes")
    with pytest.raises(ValueError, match=r"weight_bits must be an integer in \[2, 8\], got 16"):
        quantize.prepare_qat(mlp, weight_bits=16)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        quantize.static_int8("mlp", torch.zeros(2, 64))
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize.static_int8(nn.ReLU(), torch.zeros(2, 64))
    with pytest.raises(TypeError, match="e.g. split.val"):
        quantize.static_int8(mlp, data.load_digits())
    with pytest.raises(ValueError, match="calibration_data is empty"):
        quantize.static_int8(mlp, torch.zeros(0, 64))
    with pytest.raises(ValueError, match="batches must be an integer >= 1"):
        quantize.static_int8(mlp, torch.zeros(2, 64), batches=0)
    with pytest.raises(TypeError, match="must come from quantize.prepare"):
        quantize.convert(mlp)
    with pytest.raises(ValueError, match="codes must be in"):
        quantize.pack_int4(torch.tensor([0, 16]))
    with pytest.raises(ValueError, match="even last dimension"):
        quantize.pack_int4(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="packed must be a uint8"):
        quantize.unpack_int4(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="group_size must be even and divide every Linear's in_features"):
        quantize.quantize_int4(mlp, group_size=48)
    with pytest.raises(ValueError, match="bits must be an integer in"):
        quantize.weight_error(torch.zeros(2, 2), bits=1)
    with pytest.raises(ValueError, match="ndim >= 2"):
        quantize.weight_error(torch.zeros(4))


@pytest.mark.skipif(not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"), reason="no CPU int4 kernel in this torch")
def test_int4_kernel_computes_the_dequantized_product_in_bfloat16(split, teacher):
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    plain = quantize.Int4Linear.from_linear(linear, group_size=32)
    fast = quantize.Int4Linear.from_linear(linear, group_size=32, kernel=True)
    assert fast.uses_kernel and not plain.uses_kernel
    assert torch.equal(fast.packed, plain.packed)                      # the same bytes on disk
    x = torch.randn(3, 5, 64)
    with torch.no_grad():
        ref = nn.functional.linear(x.bfloat16().float(), plain.dequantized_weight(), linear.bias)
        assert fast(x).shape == (3, 5, 32)
        assert torch.allclose(fast(x), ref, atol=0.02, rtol=0.02)      # bfloat16 output rounding
    reloaded = quantize.Int4Linear(64, 32, group_size=32, kernel=True)
    reloaded.load_state_dict(fast.state_dict())
    with torch.no_grad():
        assert torch.equal(reloaded(x), fast(x))
    q = quantize.quantize_int4(teacher, kernel=True)                   # 64 and 10 outputs: only the first
    assert [m.uses_kernel for m in q.modules() if isinstance(m, quantize.Int4Linear)] == [True, False]
    assert evaluate.accuracy(q, split.test) > evaluate.accuracy(teacher, split.test) - 0.03
    with pytest.raises(ValueError, match="kernel must be one of"):
        quantize.quantize_int4(teacher, kernel="yes")
