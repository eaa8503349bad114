import pytest
import torch
import torch.nn.functional as F

from kdlab import data, evaluate, models, train


def test_fit_learns_and_is_reproducible(split):
    results = []
    for _ in range(2):
        train.seed_everything(0)
        model = models.create("mlp-student")
        history = train.fit(model, split.train, epochs=10, lr=3e-3, progress=False)
        results.append((history["loss"], evaluate.accuracy(model, split.test)))
    assert results[0] == results[1]
    losses, accuracy = results[0]
    assert losses[-1] < losses[0] / 4
    assert accuracy > 0.85


def test_history_records_epochs_steps_and_eval(split):
    model = models.create("mlp-tiny")
    history = train.fit(model, split.train, epochs=3, batch_size=100, eval_data=split.test, progress=False)
    assert history["epoch"] == [1, 2, 3]
    assert history.steps == 3 * 9
    assert len(history["eval_acc"]) == 3 and all(0 <= a <= 1 for a in history["eval_acc"])
    assert history.seconds > 0


def test_objective_and_callbacks_plug_into_the_one_loop(split):
    seen = {"objective": 0, "steps": [], "epochs": []}

    def objective(model, batch):
        seen["objective"] += 1
        x, y = batch
        return F.cross_entropy(model(x), y)

    class Recorder(train.Callback):
        def on_epoch_end(self, state):
            seen["epochs"].append(state.epoch)

    model = models.create("mlp-tiny")
    train.fit(model, split.train, epochs=2, batch_size=300, objective=objective,
              callbacks=[Recorder(), lambda state: seen["steps"].append(state.step)], progress=False)
    assert seen["objective"] == 6 and seen["steps"] == [1, 2, 3, 4, 5, 6] and seen["epochs"] == [0, 1]


def test_callback_can_stop_training(split):
    def stop_after_two(state):
        state.stop = state.step >= 2

    history = train.fit(models.create("mlp-tiny"), split.train, epochs=5, callbacks=[stop_after_two],
                        progress=False)
    assert history.steps == 2 and len(history) == 1


def test_fit_restores_mode_and_accepts_optimizer_objects(split):
    model = models.create("mlp-teacher").eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train.fit(model, split.train, epochs=1, optimizer=opt, scheduler="cosine", progress=False)
    assert not model.training


def test_evaluate_accepts_every_data_form(split):
    model = models.create("mlp-tiny")
    expected = evaluate.accuracy(model, split.test)
    shuffled = data.make_loader(*split.test, batch_size=50, shuffle=True, seed=1)
    assert evaluate.accuracy(model, split) == expected
    assert evaluate.accuracy(model, shuffled) == pytest.approx(expected)
    assert evaluate.predict(model, split.x_test).shape == (899, 10)


def test_seed_everything_sets_what_use_deterministic_algorithms_sets_without_importing_the_compiler():
    """In a fresh process: the operators' flag on (warn only), no torch._inductor imported, and
    the compiler's config, once imported, deterministic as the public function would leave it."""
    import subprocess
    import sys

    code = ("import sys, torch; from kdlab import train; train.seed_everything(0); "
            "a = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), "
            "'torch._inductor.config' in sys.modules); import torch._inductor.config as c; "
            "train.deterministic_algorithms(False); b = (c.deterministic, torch.are_deterministic_algorithms_enabled()); "
            "train.deterministic_algorithms(True, warn_only=False); "
            "print(a, b, (c.deterministic, torch.is_deterministic_algorithms_warn_only_enabled()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(True, True, False) (False, False) (True, False)"


def test_seed_everything_fixes_threads_and_random_state():
    train.seed_everything(5, threads=1)
    a = torch.rand(3)
    assert torch.get_num_threads() == 1
    train.seed_everything(5, threads=1)
    assert torch.equal(a, torch.rand(3))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"epochs": 0}, ValueError, "epochs must be an integer >= 1, got 0"),
    ({"epochs": 1.5}, TypeError, "epochs must be an integer, got 1.5"),
    ({"epochs": 1, "lr": -1.0}, ValueError, "lr must be a finite number > 0, got -1.0"),
    ({"epochs": 1, "lr": float("nan")}, ValueError, "lr must be a finite number > 0, got nan"),
    ({"epochs": 1, "optimizer": "rmsprop"}, ValueError, "optimizer must be one of 'adam', 'adamw', 'sgd'; got 'rmsprop'"),
    ({"epochs": 1, "scheduler": "step"}, ValueError, "scheduler must be one of None, 'cosine'; got 'step'"),
    ({"epochs": 1, "batch_size": 0}, ValueError, "batch_size must be an integer >= 1, got 0"),
])
def test_bad_fit_arguments_fail_before_training(split, kwargs, error, match):
    model = models.create("mlp-tiny")
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(error, match=match):
        train.fit(model, split.train, progress=False, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bad_data_and_model():
    with pytest.raises(TypeError, match="data must be a DataLoader, an \\(x, y\\) tuple"):
        train.fit(models.create("mlp-tiny"), [1, 2, 3], epochs=1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        train.fit("model", (torch.zeros(2, 64), torch.zeros(2)), epochs=1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        train.seed_everything(-1)


def test_over_seeds_reseeds_each_call():
    values = train.over_seeds(lambda seed: torch.rand(1).item(), [1, 2, 1])
    assert values[0] == values[2] != values[1]
    with pytest.raises(ValueError, match="seeds must name at least one seed"):
        train.over_seeds(lambda s: s, [])


def test_predict_on_a_model_without_parameters():
    model = torch.nn.Flatten()
    assert evaluate.accuracy(model, (torch.eye(3), torch.tensor([0, 1, 2]))) == 1.0


def test_num_threads_restores_the_count():
    before = torch.get_num_threads()
    with train.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be an integer >= 1, got 0"):
        with train.num_threads(0):
            pass


def test_equal_step_epochs_matches_the_optimizer_steps(split):
    assert train.steps_per_epoch(898) == 15 and train.steps_per_epoch(64) == 1 and train.steps_per_epoch(0) == 0
    few = split.subset(n_train=90)
    epochs = train.equal_step_epochs(20, split, few)
    assert epochs == 150
    many = train.fit(models.create("mlp-tiny"), split, epochs=20, progress=False).steps
    assert train.fit(models.create("mlp-tiny"), few, epochs=epochs, progress=False).steps == many
    assert train.equal_step_epochs(3, 96, 20, batch_size=16) == 9
    with pytest.raises(TypeError, match="reference must be a number of examples"):
        train.equal_step_epochs(3, "all", 20)
    with pytest.raises(ValueError, match="data must hold at least one example"):
        train.equal_step_epochs(3, 96, (torch.zeros(0, 4), torch.zeros(0)))


def test_measuring_moved_to_evaluate_with_a_warning_at_the_old_name(split):
    import kdlab._deprecation

    model = models.create("mlp-tiny")
    with pytest.warns(kdlab._deprecation.CATEGORY, match="kdlab.train.evaluate .*use kdlab.evaluate.accuracy"):
        old = train.evaluate
    assert old(model, split.test) == evaluate.accuracy(model, split.test)
    with pytest.warns(kdlab._deprecation.CATEGORY, match="kdlab.evaluate.predict"):
        from kdlab.train import predict
    assert predict is evaluate.predict
    with pytest.raises(AttributeError, match="has no attribute 'evaluat'"):
        train.evaluat
