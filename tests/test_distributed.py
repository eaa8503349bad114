"""fit under DistributedDataParallel: two CPU processes (gloo) train exactly what one
process trains with the same global batch, and the Distiller runs there too."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kdlab import distill, models, train

pytestmark = pytest.mark.slow


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 12, generator=g)  # 100 = 3 batches of 32 and a last one of 4
    return x, (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()


def _train(kd: bool):
    x, y = _data()
    torch.manual_seed(0)
    model = models.MLP(12, (16,), 3)
    if kd:
        torch.manual_seed(1)
        teacher = models.MLP(12, (32,), 3)
        history = distill.Distiller(model, teacher, temperature=3.0, alpha=0.5, cache_teacher=True).fit(
            (x, y), epochs=3, batch_size=32, lr=1e-2, device="cpu", progress=False)
    else:
        history = train.fit(model, (x, y), epochs=3, batch_size=32, lr=1e-2, device="cpu", progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, history["loss"]


def _worker(rank, world, init_file, out):
    os.environ.setdefault("KDLAB_PROGRESS", "0")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        assert train.distributed() == (rank, world)
        runs = {kd: _train(kd) for kd in (False, True)}  # fit, then the Distiller: one start-up for both
        if rank == 0:
            torch.save(runs, out)
    finally:
        dist.destroy_process_group()


def test_two_processes_train_what_one_process_trains(tmp_path):
    """plain fit and the Distiller, each in the same pair of processes."""
    torch.set_num_threads(1)
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    runs = torch.load(out, weights_only=True)
    for kd in (False, True):
        single, single_losses = _train(kd)
        state, losses = runs[kd]
        for name, value in single.items():
            assert torch.allclose(state[name], value, atol=1e-5), (kd, name)
        assert losses == pytest.approx(single_losses, rel=1e-5), kd


def test_outside_torchrun_there_is_one_process():
    assert train.distributed() == (0, 1)


def test_bf16_autocast_trains_on_cpu():
    x, y = _data()
    torch.manual_seed(0)
    model = models.MLP(12, (16,), 3)
    history = train.fit(model, (x, y), epochs=2, precision="bf16", device="cpu", progress=False)
    assert history["loss"][-1] < history["loss"][0]
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16'; got 'fp16'"):
        train.fit(model, (x, y), epochs=1, precision="fp16")
