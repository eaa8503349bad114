"""How a learner's answers are collected: one function used in two places.

:func:`kdlab.grading.check` calls :func:`collect` in the learner's own process;
the grader sends this module's *source* into the graded kernel and calls it
there. Both turn what the learner's code returns into plain data (numbers,
strings, tensors, lists, dicts) that ``torch.load(weights_only=True)`` accepts,
so the grader reads answers without unpickling anything the notebook made.

Each outcome is ``("ok", value)`` or ``("raised", exception_name, message)``.
"""
import copy

import torch


def plain(value, depth=0):
    """``value`` as plain data; anything else becomes ``("unsupported", type name)``."""
    if depth > 20:
        return ("unsupported", "nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if type(value).__module__ == "numpy":
        try:
            return torch.as_tensor(value) if getattr(value, "ndim", 0) else value.item()
        except Exception:
            return ("unsupported", type(value).__name__)
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v, depth + 1) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    return ("unsupported", type(value).__name__)


def _message(err) -> str:
    try:
        return str(err)[:300]
    except Exception:  # an exception whose message itself fails
        return "(no message)"


def collect(answer, kind, cases):
    """Outcomes of ``answer``: called on a copy of every case (``kind="function"``)
    or taken as it is (``kind="value"``)."""
    if kind == "value":
        return [("ok", plain(answer))]
    outcomes = []
    for args in cases:
        try:
            outcomes.append(("ok", plain(answer(*copy.deepcopy(args)))))
        except Exception as err:  # the learner's error is part of the verdict
            outcomes.append(("raised", type(err).__name__, _message(err)))
    return outcomes
