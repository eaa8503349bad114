"""N:M semi-structured sparsity: the pattern, the choice within each run, conv layout, bad input."""
import pytest
import torch
from torch import nn

from kdlab import models, prune, train


def _reference_mask(w, n, m):
    """Keep the n largest |w| of every run of m along the input dimension, by explicit loops."""
    rows = w.detach().abs().movedim(1, -1) if w.ndim > 2 else w.detach().abs()
    flat = rows.reshape(-1, rows.shape[-1])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    for r in range(flat.shape[0]):
        for start in range(0, flat.shape[1], m):
            run = [(float(flat[r, start + j]), -j) for j in range(m)]
            for _, neg_j in sorted(run, reverse=True)[:n]:
                keep[r, start - neg_j] = True
    keep = keep.reshape(rows.shape)
    return keep.movedim(-1, 1) if w.ndim > 2 else keep


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 4), (1, 2)])
def test_linear_layers_keep_the_n_largest_of_every_m(lenet, n, m):
    before = {k: v.clone() for k, v in lenet.state_dict().items()}
    masks = prune.nm_prune(lenet, n, m)
    assert prune.sparsity(lenet)["global"] == pytest.approx(1 - n / m)
    for name in masks:
        assert torch.equal(masks[name], _reference_mask(before[name], n, m)), name
        assert prune.follows_nm(lenet.get_parameter(name), n, m)
        assert torch.equal(lenet.get_parameter(name).detach(), before[name] * masks[name])


def test_conv_runs_go_along_the_input_channels():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 3, 3)
    w = conv.weight.detach().clone()
    masks = prune.nm_prune(nn.Sequential(conv), 2, 4)
    mask = masks["0.weight"]
    assert torch.equal(mask, _reference_mask(w, 2, 4))
    assert (mask.view(3, 2, 4, 3, 3).sum(2) == 2).all()  # 2 of every 4 input channels, each position


def test_ties_go_to_the_lower_index():
    mask = prune.nm_mask(torch.ones(2, 8), 2, 4)
    assert mask.int().tolist() == [[1, 1, 0, 0, 1, 1, 0, 0]] * 2


def test_masks_hold_through_fine_tuning(lenet, split):
    masks = prune.nm_prune(lenet, 2, 4)
    train.fit(lenet, split, epochs=1, lr=3e-3, callbacks=[masks.callback()], progress=False)
    assert all(prune.follows_nm(lenet.get_parameter(name), 2, 4) for name in masks)


def test_a_custom_criterion_chooses_within_each_run(lenet):
    class Last(prune.Importance):  # the highest index of each run wins
        def weight_scores(self, model, weights):
            return {k: torch.arange(w.shape[-1], dtype=torch.float32).expand_as(w) for k, w in weights.items()}

    masks = prune.nm_prune(lenet, 1, 4, criterion=Last())
    assert masks["layers.0.weight"][0, :8].int().tolist() == [0, 0, 0, 1, 0, 0, 0, 1]


def test_bad_input_is_refused_before_any_weight_changes():
    model = models.MLP(in_features=6, hidden=(8,), num_classes=3)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"layer 'layers.0' has an input width of 6, not a multiple of m=4"):
        prune.nm_prune(model, 2, 4)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    masks = prune.nm_prune(model, 2, 4, layers=["layers.2"])
    assert list(masks) == ["layers.2.weight"]
    with pytest.raises(ValueError, match="n must be at most m .* got n=5, m=4"):
        prune.nm_prune(model, 5, 4)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        prune.nm_mask(torch.ones(2, 4), 0, 4)
    with pytest.raises(TypeError, match="m must be an integer"):
        prune.nm_prune(model, 2, 4.0)
    with pytest.raises(TypeError, match="criterion must be a kdlab.prune.Importance"):
        prune.nm_prune(model, 2, 4, criterion="l1", layers=["layers.2"])
    with pytest.raises(ValueError, match=r"the input dimension \(6\) must be a multiple of m=4"):
        prune.nm_mask(torch.ones(2, 6), 2, 4)
    assert not prune.follows_nm(torch.ones(2, 8), 2, 4)
