"""A small character-level text corpus that ships with kdlab, for language-model
distillation without a download.

``course_answers.txt`` is the course's own 60-second answers (lessons 01-20), frozen as
plain lower-case ASCII text (about 28,000 characters, 53 symbols): formulas and
markdown were removed, so some sentences have gaps where a formula stood.

>>> corpus = load_text()
>>> corpus.decode(corpus.encode("the teacher"))
'the teacher'
>>> x, y = corpus.windows("train", 32)
>>> x.shape[1], bool((x[:, 1:] == y[:, :-1]).all())
(32, True)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from kdlab import _validate

TEXTS = {"course-answers": "course_answers.txt"}
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class TextCorpus:
    """A text, its sorted vocabulary of characters, and a contiguous split into
    ``train`` / ``val`` / ``test`` parts (80 / 10 / 10 per cent of the characters)."""

    name: str
    text: str

    @property
    def vocabulary(self) -> str:
        return "".join(sorted(set(self.text)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> torch.Tensor:
        """Character ids of ``text`` (every character must be in the vocabulary)."""
        index = {c: i for i, c in enumerate(self.vocabulary)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            raise ValueError(f"text holds characters outside the vocabulary of {self.name!r}: {unknown!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        vocab = self.vocabulary
        return "".join(vocab[int(i)] for i in torch.as_tensor(ids).flatten())

    def part(self, name: str) -> str:
        _validate.choice("part", name, PARTS)
        n = len(self.text)
        bounds = {"train": (0, int(0.8 * n)), "val": (int(0.8 * n), int(0.9 * n)), "test": (int(0.9 * n), n)}
        start, end = bounds[name]
        return self.text[start:end]

    def windows(self, part: str, length: int) -> tuple:
        """``(x, y)``: non-overlapping windows of ``length`` characters of ``part`` and the
        same windows shifted by one (the next character at every position), ``(N, length)``."""
        length = _validate.positive_int("length", length)
        ids = self.encode(self.part(part))
        n = (len(ids) - 1) // length
        if n < 1:
            raise ValueError(f"the {part} part has {len(ids)} characters, too few for windows of {length}")
        x = ids[: n * length].view(n, length)
        y = ids[1: n * length + 1].view(n, length)
        return x, y


def load_text(name: str = "course-answers") -> TextCorpus:
    """The shipped corpus ``name`` (one of :data:`TEXTS`) as a :class:`TextCorpus`."""
    _validate.choice("name", name, TEXTS)
    path = Path(__file__).with_name(TEXTS[name])
    return TextCorpus(name, path.read_text(encoding="ascii"))
