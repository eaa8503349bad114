"""kdlab.models.pretrained_charlm: the cached character-level teacher of lesson 17."""
from __future__ import annotations

import math

import pytest
import torch

from kdlab import models
from kdlab.data.text import load_text
from kdlab.distill import lm_loss


def test_trains_once_then_loads_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    state = torch.random.get_rng_state()
    first = models.pretrained_charlm(hidden=8, embedding=4, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), state), "training leaves the caller's random state alone"
    assert not first.training and isinstance(first, models.CharLM)
    files = list(tmp_path.glob("charlm-course-answers-seed0-*.pt"))
    assert len(files) == 1
    second = models.pretrained_charlm(hidden=8, embedding=4, epochs=1)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    other = models.pretrained_charlm(hidden=8, embedding=4, epochs=2)
    assert len(list(tmp_path.glob("charlm-*.pt"))) == 2, "another recipe is another file"
    # one epoch of training already beats the uniform guess over the vocabulary on held-out text
    corpus = load_text()
    x, y = corpus.windows("val", 64)
    with torch.no_grad():
        assert lm_loss(other(x), y).item() < math.log(corpus.vocab_size)


def test_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="overrides"):
        models.pretrained_charlm(hiden=8)
    with pytest.raises(ValueError, match="hidden"):
        models.pretrained_charlm(hidden=0)
    with pytest.raises(ValueError, match="name"):
        models.pretrained_charlm("no-such-corpus")
    assert not list(tmp_path.glob("*.pt"))
