"""The graded items of the course: one registry used by :func:`check` and the grader.

An item has an id ``"NN.name"`` (lesson number, then the name the notebook
defines), its points, how it is checked and the hints for the usual wrong
answers. Three kinds:

- :class:`FunctionItem`: the learner writes a function that kdlab also has; it
  is compared with kdlab's reference on fresh random inputs (property tests).
- :class:`NumberItem`: a number within a tolerance, typically measured by an
  experiment.
- :class:`ChoiceItem` and :class:`SetItem`: one option, or a set of options.

Items live in ``kdlab/grading/items/lNN.py`` as a module-level list ``ITEMS``;
every module there is discovered, so a lesson adds its items without touching
anything else.

Grading is all or nothing per item: ``points`` if every case passes, else 0.
A verdict's message never contains the reference answer.
"""
from __future__ import annotations

import difflib
import importlib
import math
import os
import warnings
import pkgutil
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import torch

from kdlab import _validate

ID_PATTERN = re.compile(r"^(\d\d)\.([a-z_][a-z0-9_]*)$")
NOT_IMPLEMENTED = "not implemented yet: replace `raise NotImplementedError()` with your code"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one item: ``points`` earned out of ``max_points``."""

    item_id: str
    passed: bool
    points: float
    max_points: float
    message: str

    @property
    def line(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.item_id}: {self.message}"


class Item:
    """A graded item. ``name`` is what the notebook defines (default: the part of
    the id after the dot); ``points`` > 0."""

    kind = "value"

    def __init__(self, item_id: str, *, points: float = 1, name: str | None = None,
                 prompt: str = ""):
        if not isinstance(item_id, str) or not ID_PATTERN.match(item_id):
            raise ValueError(f"item_id must look like '03.magnitude_prune' (two digits, a dot, "
                             f"a lower-case Python name), got {item_id!r}")
        self.id = item_id
        self.lesson = item_id[:2]
        self.points = _validate.positive_float("points", points)
        self.name = name or ID_PATTERN.match(item_id).group(2)
        if not self.name.isidentifier():
            raise ValueError(f"name must be a Python identifier, got {name!r}")
        self.prompt = prompt

    @property
    def grade_id(self) -> str:
        """The nbgrader ``grade_id`` of the item's test cell (nbgrader allows no dots)."""
        return self.id.replace(".", "-")

    def cases(self, seed: int) -> list:
        """Argument tuples the answer is called with (none for a value)."""
        return []

    def judge(self, cases: list, outcomes: list) -> Verdict:
        """Verdict on ``outcomes`` (see :mod:`kdlab.grading._harness`) for ``cases``."""
        for outcome in outcomes:
            if outcome[0] == "raised":
                if outcome[1] == "NotImplementedError":
                    return self._fail(NOT_IMPLEMENTED)
                return self._fail(f"your code raised {outcome[1]}: {outcome[2]}")
            unsupported = _unsupported(outcome[1])
            if unsupported:
                return self._fail(unsupported)
        # References, usual-mistake variants and measured targets are kdlab's own code:
        # they must neither move the learner's random state nor print warnings (a
        # mistake variant such as reduction="mean" warns by design).
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hint = self._hint(cases, [o[1] for o in outcomes])
        if hint is None:
            return Verdict(self.id, True, self.points, self.points, self._pass_message(len(cases)))
        return self._fail(hint)

    def _fail(self, message: str) -> Verdict:
        return Verdict(self.id, False, 0.0, self.points, message)

    def _pass_message(self, n_cases: int) -> str:
        return "correct"

    def _hint(self, cases: list, answers: list) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError


def _unsupported(value) -> str | None:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "unsupported":
        return f"your answer is a {value[1]}; give a number, a string, a tensor or a list"
    return None


def close(got, expected, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """True when ``got`` equals ``expected`` within tolerances: numbers, tensors (same
    shape), and lists/dicts of them."""
    if isinstance(expected, torch.Tensor):
        if isinstance(got, (int, float)) and not isinstance(got, bool) and expected.numel() == 1:
            got = torch.tensor(got)
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return False
        if expected.dtype == torch.bool or not expected.is_floating_point():
            return bool(torch.equal(got.to(expected.dtype), expected))
        return bool(torch.allclose(got.double(), expected.double(), rtol=rtol, atol=atol))
    if isinstance(expected, bool) or isinstance(expected, str) or expected is None:
        return got == expected
    if isinstance(expected, (int, float)):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return False
        return math.isclose(got, expected, rel_tol=rtol, abs_tol=atol)
    if isinstance(expected, (list, tuple)):
        return (isinstance(got, (list, tuple)) and len(got) == len(expected)
                and all(close(g, e, rtol, atol) for g, e in zip(got, expected)))
    if isinstance(expected, dict):
        return (isinstance(got, dict) and got.keys() == expected.keys()
                and all(close(got[k], expected[k], rtol, atol) for k in expected))
    raise TypeError(f"cannot compare with a reference of type {type(expected).__name__}")


class FunctionItem(Item):
    """The learner's function against ``reference`` on ``n_cases`` random inputs.

    Args:
        reference: kdlab's function, same signature as the learner's.
        inputs: ``inputs(generator) -> tuple`` of arguments for one case, drawn
            with the ``torch.Generator`` it gets (and nothing else random).
        wrong: ``[(variant, hint), ...]``: common wrong versions of the function;
            when the learner's result matches a variant's, its hint is shown.
        explain: ``explain(answer, args) -> hint or None`` for hints computed from the
            learner's result and the inputs (never from the reference result).
        rtol, atol: tolerances of :func:`close`.
        n_cases: number of random cases, >= 1.
        describe: ``describe(args) -> str`` names a failing case in the hint.
    """

    kind = "function"

    def __init__(self, item_id: str, *, reference: Callable, inputs: Callable,
                 wrong: Sequence = (), explain: Callable | None = None, rtol: float = 1e-5,
                 atol: float = 1e-6, n_cases: int = 20, describe: Callable | None = None, **kw):
        super().__init__(item_id, **kw)
        if not callable(reference) or not callable(inputs):
            raise TypeError("reference and inputs must be callables")
        self.reference, self.inputs, self.wrong = reference, inputs, list(wrong)
        self.explain, self.describe = explain, describe
        self.rtol, self.atol = rtol, atol
        self.n_cases = _validate.positive_int("n_cases", n_cases)

    def cases(self, seed: int) -> list:
        generator = torch.Generator().manual_seed(seed)
        # Models built for a case draw their initial weights from the global RNG;
        # the learner's random state stays as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return [tuple(self.inputs(generator)) for _ in range(self.n_cases)]

    def _pass_message(self, n_cases: int) -> str:
        return f"passed {n_cases} random cases"

    def _hint(self, cases: list, answers: list) -> str | None:
        for index, (args, got) in enumerate(zip(cases, answers)):
            expected = self.reference(*args)
            if close(got, expected, self.rtol, self.atol):
                continue
            for variant, hint in self.wrong:
                if close(got, variant(*args), self.rtol, self.atol):
                    return hint
            hint = self.explain(got, args) if self.explain else None
            if hint:
                return hint
            where = self.describe(args) if self.describe else f"random case {index + 1}"
            found = diagnose(got, expected, self.rtol, self.atol)
            return (f"wrong result on {where}: {found}" if found else
                    f"wrong result on {where}; compare your function with the definition above, "
                    f"step by step")
        return None


def _describe_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def diagnose(got, expected, rtol: float = 1e-5, atol: float = 1e-6) -> str | None:
    """What is wrong with ``got``, described without giving ``expected`` away.

    The diagnoses every function item shares: wrong type or shape, NaN or infinity,
    rows that should sum to 1 and do not, a mask that keeps too many or too few
    entries, the right values with the sign flipped, transposed, off by a constant
    factor or by a constant offset. ``None`` when none of them fits.

    >>> import torch
    >>> diagnose(torch.tensor([0.2, 0.6]), torch.tensor([0.25, 0.75]))
    'the entries along the last dimension should sum to 1; yours sum to 0.8'
    >>> diagnose(-torch.ones(3), torch.ones(3))
    'the right size, the opposite sign: check the sign of each term'
    """
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        expected = torch.tensor(float(expected))
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            got = torch.tensor(float(got))
        elif isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
    if not isinstance(expected, torch.Tensor):
        if type(got) is not type(expected) and not (isinstance(expected, (list, tuple))
                                                    and isinstance(got, (list, tuple))):
            return f"your function returns {_describe_type(got)}; it should return {_describe_type(expected)}"
        if isinstance(expected, (list, tuple)) and len(got) != len(expected):
            return f"your result has {len(got)} entries; it should have {len(expected)}"
        return None
    if not isinstance(got, torch.Tensor):
        return f"your function returns {_describe_type(got)}; it should return {_describe_type(expected)}"
    if got.shape != expected.shape:
        if got.ndim == 2 and got.shape == expected.shape[::-1] and expected.ndim == 2 and close(got.T, expected, rtol, atol):
            return f"your result is transposed: shape {tuple(got.shape)}, it should be {tuple(expected.shape)}"
        return f"your result has shape {tuple(got.shape)}; it should have shape {tuple(expected.shape)}"
    if got.is_floating_point():
        if torch.isnan(got).any():
            return f"your result contains NaN ({int(torch.isnan(got).sum())} of {got.numel()} entries)"
        if torch.isinf(got).any() and not torch.isinf(expected).any():
            return f"your result contains infinity ({int(torch.isinf(got).sum())} of {got.numel()} entries)"
    if expected.dtype == torch.bool or (not expected.is_floating_point() and
                                        set(expected.unique().tolist()) <= {0, 1}):
        kept_got, kept_exp = int((got != 0).sum()), int((expected != 0).sum())
        if kept_got != kept_exp:
            return (f"your mask keeps {kept_got} of {got.numel()} entries (removes "
                    f"{got.numel() - kept_got}); it should remove {got.numel() - kept_exp}")
        return "your mask keeps the right number of entries, but not the right ones"
    if not expected.is_floating_point():
        return None
    g, e = got.double(), expected.double()
    if e.ndim >= 1 and e.shape[-1] > 1 and (e >= 0).all() and torch.allclose(e.sum(-1), torch.ones(()).double(), atol=1e-4):
        sums = g.sum(-1)
        if not torch.allclose(sums, torch.ones(()).double(), atol=1e-4):
            lo, hi = float(sums.min()), float(sums.max())
            span = f"{lo:.3g}" if math.isclose(lo, hi, rel_tol=1e-3) else f"{lo:.3g} to {hi:.3g}"
            return f"the entries along the last dimension should sum to 1; yours sum to {span}"
    if close(-g, e, rtol, atol):
        return "the right size, the opposite sign: check the sign of each term"
    denom = float((e * e).sum())
    if denom > 0:
        factor = float((g * e).sum()) / denom
        if factor != 0 and not math.isclose(factor, 1.0, rel_tol=1e-4) and close(g, factor * e, 1e-4, 1e-6):
            return f"your result is off by a constant factor of {factor:.4g}: check the scaling of each term"
    offset = float((g - e).mean())
    if offset != 0 and close(g, e + offset, 1e-4, 1e-6):
        return f"your result is off by a constant {offset:+.4g}: check what is added or subtracted"
    return None


class NumberItem(Item):
    """A number within ``rel_tol``/``abs_tol`` of ``target`` (a number, or a function
    computing it once per process, e.g. by an experiment).

    ``wrong`` is ``[(value_or_function, hint), ...]``: answers near a usual wrong
    value get its hint."""

    def __init__(self, item_id: str, *, target, rel_tol: float = 0.0, abs_tol: float = 0.0,
                 wrong: Sequence = (), hint: str = "", **kw):
        super().__init__(item_id, **kw)
        if rel_tol == 0 and abs_tol == 0:
            raise ValueError("give rel_tol or abs_tol: a measured number needs a tolerance")
        self.rel_tol = _validate.positive_float("rel_tol", rel_tol, allow_zero=True)
        self.abs_tol = _validate.positive_float("abs_tol", abs_tol, allow_zero=True)
        self._target, self.wrong, self.hint = target, list(wrong), hint

    def target(self) -> float:
        return _value(self._target)

    def _near(self, got: float, value: float) -> bool:
        return math.isclose(got, value, rel_tol=self.rel_tol, abs_tol=self.abs_tol)

    def _hint(self, cases: list, answers: list) -> str | None:
        got = answers[0]
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            return f"{self.name} must be a finite number, got {_show(got)}"
        if self._near(got, self.target()):
            return None
        for value, hint in self.wrong:
            if self._near(got, _value(value)):
                return hint
        return self.hint or f"{self.name} is not within the tolerance; run the experiment again"


class ChoiceItem(Item):
    """One of ``options``; ``hints`` maps a wrong option to its hint."""

    def __init__(self, item_id: str, *, options: Sequence, answer, hints: dict | None = None,
                 hint: str = "", **kw):
        super().__init__(item_id, **kw)
        self.options = list(options)
        _validate.choice("answer", answer, self.options)
        self.answer, self.hints, self.hint = answer, dict(hints or {}), hint

    def _hint(self, cases: list, answers: list) -> str | None:
        got = answers[0]
        if got not in self.options:
            return (f"{self.name} must be one of " + ", ".join(repr(o) for o in self.options)
                    + f"; got {_show(got)}")
        if got == self.answer:
            return None
        return self.hints.get(got) or self.hint or f"{got!r} is not right; look at the experiment again"


class SetItem(Item):
    """A set of ``options`` (a list, tuple or set); ``hints`` maps an option wrongly
    chosen or wrongly left out to its hint."""

    def __init__(self, item_id: str, *, options: Sequence, answer: Iterable,
                 hints: dict | None = None, **kw):
        super().__init__(item_id, **kw)
        self.options = list(options)
        self.answer = set(answer)
        for a in self.answer:
            _validate.choice("answer", a, self.options)
        self.hints = dict(hints or {})

    def _hint(self, cases: list, answers: list) -> str | None:
        got = answers[0]
        if isinstance(got, str) or not isinstance(got, list):
            return f"{self.name} must be a set of options, got {_show(got)}"
        unknown = [g for g in got if g not in self.options]
        if unknown:
            return (f"{unknown[0]!r} is not an option; choose among "
                    + ", ".join(repr(o) for o in self.options))
        chosen = set(got)
        wrong = sorted(chosen - self.answer, key=repr) + sorted(self.answer - chosen, key=repr)
        if not wrong:
            return None
        specific = next((self.hints[w] for w in wrong if w in self.hints), None)
        return specific or (f"{len(chosen - self.answer)} chosen option(s) do not belong and "
                            f"{len(self.answer - chosen)} are missing")


def _value(target) -> float:
    return float(target()) if callable(target) else float(target)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _lesson_of(module_name: str) -> str:
    match = re.fullmatch(r"l(\d\d)", module_name.rsplit(".", 1)[-1])
    if not match:
        raise ValueError(f"item module {module_name} must be named lNN (e.g. l03)")
    return match.group(1)


@lru_cache(maxsize=None)
def all_items() -> dict:
    """Every registered item, ``{id: item}``, from the modules of :mod:`kdlab.grading.items`."""
    from kdlab.grading import items as package

    found: dict = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        lesson = _lesson_of(info.name)
        for item in getattr(module, "ITEMS", []):
            if not isinstance(item, Item):
                raise TypeError(f"{module.__name__}.ITEMS holds {item!r}, not an Item")
            if item.lesson != lesson:
                raise ValueError(f"item {item.id} belongs in items/l{item.lesson}.py, "
                                 f"not {info.name}.py")
            if item.id in found:
                raise ValueError(f"item id {item.id} is registered twice")
            found[item.id] = item
    return found


def get(item_id: str) -> Item:
    """The item ``item_id``; a ValueError names the closest ids when it is unknown."""
    items = all_items()
    if item_id not in items:
        near = difflib.get_close_matches(str(item_id), list(items), n=3)
        also = f"; did you mean {', '.join(near)}?" if near else ""
        raise ValueError(f"item_id {item_id!r} is not a graded item{also}")
    return items[item_id]


def lesson_items(lesson: str) -> list:
    """The items of lesson ``"NN"``, in registration order."""
    return [item for item in all_items().values() if item.lesson == lesson]


def by_grade_id(grade_id: str) -> Item | None:
    return next((i for i in all_items().values() if i.grade_id == grade_id), None)


class Checked:
    """What :func:`check` returns: true when the item passed. A notebook shows nothing
    for it (the verdict line is already printed), so a check cell reads as its verdict."""

    __slots__ = ("verdict",)

    def __init__(self, verdict: Verdict):
        self.verdict = verdict

    def __bool__(self) -> bool:
        return self.verdict.passed

    def __eq__(self, other):
        return bool(self) == other if isinstance(other, bool) else NotImplemented

    __hash__ = None

    def _ipython_display_(self):
        pass

    def __repr__(self) -> str:
        return f"Checked({self.verdict.line!r})"


def check(item_id: str, answer) -> Checked:
    """Check ``answer`` for item ``item_id`` now, print the verdict and return whether
    it passed (a :class:`Checked`, true when it did; a notebook displays nothing for it).

    A function is compared with kdlab's reference on fresh random inputs (new
    ones on every call); a value is compared with the expected answer. The
    verdict says what is wrong without showing the expected answer::

        >>> def accuracy(y_true, y_pred):
        ...     if y_pred.ndim == 2:  # logits or probabilities
        ...         y_pred = y_pred.argmax(1)
        ...     return (y_true == y_pred).float().mean().item()
        >>> passed = check("00.accuracy", accuracy)
        ✓ 00.accuracy: passed 20 random cases
        >>> bool(passed)
        True
    """
    from kdlab.grading._harness import collect

    if os.environ.get("KDLAB_GRADING_SANDBOX") == "1":
        # kdlab grade runs this notebook: the graded items are out of its reach and the
        # grader checks the answers itself, with its own cases
        verdict = Verdict(str(item_id), True, 0.0, 0.0, "checked by kdlab grade, not here")
        print(f"- {item_id}: checked by kdlab grade, not here")
        return Checked(verdict)
    item = get(item_id)
    if item.kind == "function" and not callable(answer):
        verdict = item._fail(f"pass your function itself, got a {type(answer).__name__}")
    elif item.kind == "value" and callable(answer):
        verdict = item._fail("pass the value of your answer, not a function")
    else:
        cases = item.cases(secrets.randbits(62))
        verdict = item.judge(cases, collect(answer, item.kind, cases))
    print(verdict.line)
    return Checked(verdict)
