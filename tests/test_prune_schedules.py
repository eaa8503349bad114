"""Pruning schedules (one-shot, iterative, AGP) as training callbacks."""
import math

import pytest
import torch

from kdlab import prune, train


def test_agp_follows_the_zhu_gupta_formula():
    si, sf, t0, t1, dt = 0.1, 0.9, 10, 110, 20
    agp = prune.AGP(si, sf, start=t0, end=t1, frequency=dt)
    n = (t1 - t0) / dt
    for t in range(0, 150):
        if t < t0:
            expected = 0.0
        elif t >= t1:
            expected = sf
        else:
            tq = t0 + (t - t0) // dt * dt
            expected = sf + (si - sf) * (1 - (tq - t0) / (n * dt)) ** 3
        assert agp.sparsity_at(t) == pytest.approx(expected, abs=1e-12), t
    assert agp.sparsity_at(t0) == pytest.approx(si)
    assert agp.sparsity_at(t0 + 50) == pytest.approx(sf + (si - sf) * (1 - 40 / 100) ** 3)


def test_iterative_and_one_shot_values():
    it = prune.Iterative(0.9, 3, every=10, start=5)
    assert [it.sparsity_at(t) for t in (0, 5, 14, 15, 25, 100)] == pytest.approx([0, 0.3, 0.3, 0.6, 0.9, 0.9])
    assert prune.OneShot(0.4).sparsity_at(1000) == 0.4


def test_iterative_geometric_removes_the_same_fraction_of_survivors_each_round():
    it = prune.Iterative(0.97, 4, every=10, start=5, geometric=True)
    values = [it.sparsity_at(t) for t in (0, 5, 15, 25, 35, 1000)]
    assert values[0] == 0 and values[-2] == pytest.approx(0.97) and values[-1] == pytest.approx(0.97)
    kept = [1 - s for s in values[1:5]]
    removed = [1 - kept[0]] + [1 - b / a for a, b in zip(kept, kept[1:])]
    assert removed == pytest.approx([1 - 0.03 ** 0.25] * 4)
    assert prune.Iterative(0.97, 4, every=10).sparsity_at(35) == pytest.approx(0.97)  # default unchanged
    with pytest.raises(TypeError, match="geometric"):
        prune.Iterative(0.9, 3, every=10, geometric="yes")


@pytest.mark.parametrize("schedule", [
    lambda: prune.AGP(0.0, 0.8, start=0, end=40, frequency=5),
    lambda: prune.Iterative(0.8, 4, every=10),
    lambda: prune.Iterative(0.8, 4, every=10, geometric=True),
    lambda: prune.AGP(0.0, 0.8, start=0, end=40, frequency=5,
                      prune_fn=lambda m, a, previous: prune.random_prune(m, a, seed=0, scope="layer",
                                                                         previous=previous)),
], ids=["agp-magnitude", "iterative", "iterative-geometric", "agp-random-layer"])
def test_schedules_drive_fit_and_never_revive_weights(lenet, split, schedule):
    schedule = schedule()
    seen = []
    record = lambda state: seen.append({n: m.clone() for n, m in schedule.masks.items()}) \
        if schedule.masks is not None else None
    train.fit(lenet, split, epochs=4, callbacks=[schedule, record])  # 15 steps per epoch
    assert prune.sparsity(lenet)["global"] == pytest.approx(0.8, abs=1e-4)
    for before, after in zip(seen, seen[1:]):
        assert all(not torch.any(after[n] & ~before[n]) for n in before)
    assert all(torch.count_nonzero(lenet.get_parameter(n).detach()[~m]) == 0 for n, m in schedule.masks.items())


def test_gradient_criterion_in_a_schedule(lenet, split):
    import functools

    taylor = functools.partial(prune.gradient_prune, data=split, criterion="taylor")
    train.fit(lenet, split, epochs=1, callbacks=[prune.OneShot(0.7, prune_fn=taylor)])
    assert prune.sparsity(lenet)["global"] == pytest.approx(0.7, abs=1e-4)


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="initial"):
        prune.AGP(0.9, 0.5, start=0, end=10)
    with pytest.raises(ValueError, match="end"):
        prune.AGP(0.0, 0.5, start=10, end=10)
    with pytest.raises(ValueError, match="final"):
        prune.AGP(0.0, math.nan, start=0, end=10)
    with pytest.raises(ValueError, match="n_steps"):
        prune.Iterative(0.5, 0, every=3)
    with pytest.raises(TypeError, match="prune_fn"):
        prune.OneShot(0.5, prune_fn="magnitude")
