"""The reference of the graded item 15.affine_qparams is what kdlab.quantize and torch's
observers compute for uint8, and its random ranges cover all three cases."""
import pytest
import torch

from kdlab import quantize
from kdlab.grading import registry


def test_affine_qparams_reference_matches_torch_observers():
    item = registry.all_items()["15.affine_qparams"]
    cases = item.cases(0) + item.cases(1)
    kinds = {(lo < 0 < hi, lo > 0, hi < 0) for lo, hi in cases}
    assert len(kinds) == 3                                         # across 0, all positive, all negative
    for lo, hi in cases:
        scale, zero = item.reference(lo, hi)
        obs = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8, quant_min=0, quant_max=255)
        obs(torch.tensor([lo, hi]))
        s_t, z_t = obs.calculate_qparams()
        assert scale == pytest.approx(float(s_t), rel=1e-6) and zero == int(z_t)
        assert (scale, zero) == quantize.affine_qparams(lo, hi)
        assert 0 <= zero <= 255 and isinstance(zero, int)
