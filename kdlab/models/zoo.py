"""Trained models, made deterministically once and cached on disk:
``kdlab.models.pretrained(preset)``.

Lessons, solutions and benchmarks ask for the same teachers again and again;
:func:`pretrained` trains each one with a fixed recipe the first time and loads
it afterwards, so a whole course run trains every teacher once. Training runs
under ``torch.random.fork_rng``: calling it never changes the caller's random
state, whether the model came from the cache or not.

The cache lives in ``$KDLAB_CACHE`` or ``~/.cache/kdlab/models``; files are
written atomically, so parallel notebook runs can share it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

import kdlab
from kdlab import _validate
from kdlab.data import load_dataset, random_shift
from kdlab.models import PRESETS, create
from kdlab.train import fit

# preset -> training recipe on the embedded digits (other data sets: DATASET_RECIPES, else these).
RECIPES = {
    "mlp-teacher": {"epochs": 60, "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 64},
    "lenet-300-100": {"epochs": 40, "lr": 1e-3, "weight_decay": 0.0, "batch_size": 64},
    "mlp-student": {"epochs": 60, "lr": 3e-3, "weight_decay": 0.0, "batch_size": 64},
    "mlp-tiny": {"epochs": 60, "lr": 3e-3, "weight_decay": 0.0, "batch_size": 64},
    "cnn-teacher": {"epochs": 30, "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64},
    "cnn-student": {"epochs": 40, "lr": 3e-3, "weight_decay": 0.0, "batch_size": 64},
}


# dataset -> preset -> recipe, where the digits' recipe does not fit. Each recipe's
# accuracy on its data is stated here and checked by tests/test_zoo.py.
DATASET_RECIPES = {
    "mnist-5k": {
        # test accuracy, seed 0, on the 1,000 test images: see tests/test_zoo.py
        "cnn-teacher": {"epochs": 30, "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64,
                        "scheduler": "cosine", "shift": 2},
        # Hinton et al.'s MNIST teacher size, 784-1200-1200-10
        "mlp-teacher": {"epochs": 60, "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 64,
                        "scheduler": "cosine", "shift": 2, "model": {"hidden": (1200, 1200), "dropout": 0.3}},
    },
}


def recipe(preset: str, dataset: str = "digits") -> dict:
    """The training recipe :func:`pretrained` uses for ``preset`` on ``dataset``."""
    _validate.choice("preset", preset, PRESETS)
    return dict(DATASET_RECIPES.get(dataset, {}).get(preset, RECIPES[preset]))


def cache_dir() -> Path:
    return Path(os.environ.get("KDLAB_CACHE", Path.home() / ".cache" / "kdlab" / "models"))


def _fingerprint(data) -> str:
    """A short hash of the training part, so a model trained on a validation-carved
    or subsampled split never answers for one trained on the whole training part."""
    h = hashlib.sha256()
    for t in (data.x_train, data.y_train):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cache_name(stem: str, seed: int, **identity) -> str:
    """The cache file name of a model: ``stem``, the seed and a hash of everything that
    decides its weights (``identity``: preset, data, recipe...), the kdlab and torch
    versions and the thread count."""
    blob = json.dumps({**identity, "seed": seed, "kdlab": kdlab.__version__,
                       "torch": torch.__version__.split("+")[0], "threads": torch.get_num_threads()},
                      sort_keys=True)
    return f"{stem}-seed{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.pt"


def _key(preset: str, dataset: str, seed: int, recipe: dict, data) -> str:
    return _cache_name(f"{preset}-{dataset}", seed, preset=preset, dataset=dataset, recipe=recipe,
                       train=_fingerprint(data))


def pretrained(preset: str, dataset: str = "digits", *, seed: int = 0, epochs: int | None = None,
               data=None) -> nn.Module:
    """A model of ``preset`` trained on ``dataset`` with the recipe of :data:`RECIPES`,
    returned in eval mode.

    ``data`` may pass an already loaded :class:`kdlab.data.Split` of ``dataset``
    (otherwise it is loaded with the split of seed 0); the model is trained on its
    training part only (a validation part stays held out) and cached under a hash
    of that part. CNN presets get images, MLP presets flat vectors.
    """
    _validate.choice("preset", preset, PRESETS)
    seed = _validate.positive_int("seed", seed, allow_zero=True)
    recipe_ = recipe(preset, dataset)
    if epochs is not None:
        recipe_["epochs"] = _validate.positive_int("epochs", epochs)
    flat = preset.startswith(("mlp", "lenet"))
    if data is None:
        data = load_dataset(dataset, flat=flat)
    path = cache_dir() / _key(preset, dataset, seed, recipe_, data)
    def build():
        return create(preset, input_shape=data.input_shape, num_classes=data.num_classes,
                      **recipe_.get("model", {}))

    def train(model):
        fit(model, data.train, epochs=recipe_["epochs"], lr=recipe_["lr"],
            weight_decay=recipe_["weight_decay"], batch_size=recipe_["batch_size"], seed=seed,
            scheduler=recipe_.get("scheduler"),
            augment=random_shift(recipe_["shift"]) if recipe_.get("shift") else None,
            device="cpu", progress=False)

    return _cached(path, seed, build, train)


def _load(model: nn.Module, path: Path) -> bool:
    """Load ``path`` into ``model``; False when it is missing or damaged (a damaged cache
    file is retrained, never trusted)."""
    if not path.exists():
        return False
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _training_lock(path: Path):
    """An exclusive lock beside ``path`` while one process trains the model, so that other
    processes that need it at the same time (test workers, notebooks) wait for it and load
    it instead of training it again. No lock where ``fcntl`` is missing (Windows) or the
    cache folder is read-only: then, at worst, two processes train the same model."""
    try:
        import fcntl
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            # removed while still held: whoever waits on it finds the model saved; whoever
            # comes later loads the model without locking
            Path(handle.name).unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(path: Path, seed: int, build, train) -> nn.Module:
    """The model ``build()`` makes (under ``torch.manual_seed(seed)``, the global random
    state left as it was), loaded from ``path`` if it holds a readable state, else
    trained by ``train(model)`` and saved there atomically (one process at a time, see
    :func:`_training_lock`); in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        if _load(model, path):
            return model.eval()
        with _training_lock(path):
            if _load(model, path):  # trained meanwhile by another process
                return model.eval()
            train(model)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, path)
    return model.eval()


# The character-level language model teacher on a shipped text corpus (kdlab.data.text).
CHARLM_RECIPE = {"hidden": 128, "embedding": 32, "length": 64, "epochs": 25, "lr": 3e-3, "batch_size": 32}


def pretrained_charlm(corpus: str = "course-answers", *, seed: int = 0, **overrides) -> nn.Module:
    """A :class:`kdlab.models.CharLM` trained on the ``train`` part of the shipped text
    ``corpus`` (:func:`kdlab.data.text.load_text`) with :data:`CHARLM_RECIPE` (keys of it
    in ``overrides`` replace its values): Adam on the next-character cross-entropy
    (:func:`kdlab.distill.lm_objective`) over non-overlapping windows of ``length``
    characters. Trained once, cached like :func:`pretrained` (the key holds the recipe
    and a hash of the text), returned in eval mode. With the default recipe the model
    is the teacher of lesson 17's generative-distillation section (25 epochs: of the
    checkpoints every 5 epochs of a 40-epoch run of the same recipe, the one with the
    lowest loss on the corpus's ``val`` part; it overfits after that).
    """
    from kdlab.data.text import load_text
    from kdlab.distill.generative import lm_objective
    from kdlab.models import CharLM

    seed = _validate.positive_int("seed", seed, allow_zero=True)
    unknown = sorted(set(overrides) - set(CHARLM_RECIPE))
    if unknown:
        raise ValueError(f"overrides must be keys of CHARLM_RECIPE {sorted(CHARLM_RECIPE)}, got {unknown}")
    recipe_ = {**CHARLM_RECIPE, **overrides}
    for key in ("hidden", "embedding", "length", "epochs", "batch_size"):
        _validate.positive_int(key, recipe_[key])
    _validate.positive_float("lr", recipe_["lr"])
    text = load_text(corpus)
    path = cache_dir() / _cache_name(f"charlm-{corpus}", seed, preset="charlm", corpus=corpus, recipe=recipe_,
                                     text=hashlib.sha256(text.text.encode()).hexdigest()[:16])

    def train(model):
        fit(model, text.windows("train", recipe_["length"]), objective=lm_objective, epochs=recipe_["epochs"],
            lr=recipe_["lr"], batch_size=recipe_["batch_size"], seed=seed, device="cpu", progress=False)

    return _cached(path, seed, lambda: CharLM(text.vocab_size, embedding=recipe_["embedding"],
                                              hidden=recipe_["hidden"]), train)
