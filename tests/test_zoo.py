from pathlib import Path

import pytest
import torch

from kdlab import data, evaluate, train
from kdlab.models import zoo


def test_pretrained_is_cached_deterministic_and_leaves_rng_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    split = data.load_digits()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = zoo.pretrained("mlp-tiny", epochs=5, data=split)
    assert torch.equal(torch.rand(1), expected_next)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"
    again = zoo.pretrained("mlp-tiny", epochs=5, data=split)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not again.training and evaluate.accuracy(again, split.test) > 0.5


def test_damaged_cache_file_is_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    split = data.load_digits()
    model = zoo.pretrained("mlp-tiny", epochs=1, data=split)
    path = next(tmp_path.iterdir())
    path.write_bytes(b"not a checkpoint")
    again = zoo.pretrained("mlp-tiny", epochs=1, data=split)
    assert torch.equal(model.layers[0].weight, again.layers[0].weight)


def test_a_model_trained_without_the_validation_part_is_cached_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    split = data.load_digits()
    full = zoo.pretrained("mlp-tiny", data=split, epochs=1)
    carved = zoo.pretrained("mlp-tiny", data=split.with_validation(0.2), epochs=1)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert not torch.equal(full.state_dict()["layers.0.weight"], carved.state_dict()["layers.0.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("preset, goal", [("cnn-teacher", 0.985), ("mlp-teacher", 0.965)])
def test_mnist_5k_teachers_reach_their_stated_accuracy(preset, goal):
    """The recipes of zoo.DATASET_RECIPES['mnist-5k'], trained with one thread as the
    lessons train them (so the lessons find these models in the cache)."""
    train.seed_everything(0)
    split = data.load_dataset("mnist-5k", flat=preset.startswith("mlp"))
    model = zoo.pretrained(preset, "mnist-5k", data=split)
    accuracy = evaluate.accuracy(model, split.test)
    assert accuracy >= goal, f"{preset} on mnist-5k: {accuracy:.4f} < {goal}"


def _train_once(path, log, barrier, results):
    """One of two processes that need the same missing model at the same moment."""
    import time

    from torch import nn

    from kdlab.models import zoo

    def train(model):
        with open(log, "a") as f:
            f.write("trained\n")
        time.sleep(1.0)  # long enough for the other process to find the model missing
        with torch.no_grad():
            model.weight.add_(1.0)

    barrier.wait()
    model = zoo._cached(Path(path), 0, lambda: nn.Linear(3, 2), train)
    results.put(model.weight.detach().sum().item())


def test_two_processes_that_need_one_missing_model_train_it_once(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    path, log = tmp_path / "cache" / "model.pt", tmp_path / "log.txt"
    procs = [ctx.Process(target=_train_once, args=(str(path), str(log), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text() == "trained\n"  # one trained it, the other waited and loaded it
    a, b = results.get(timeout=5), results.get(timeout=5)
    assert a == b
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no lock or temporary file left
