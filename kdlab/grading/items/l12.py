"""Lesson 12 (pruning in practice): the AGP and iterative schedules, and reading the
budget and schedule experiments (run on the validation part)."""
from __future__ import annotations

from kdlab.grading.registry import ChoiceItem, FunctionItem, SetItem
from kdlab.grading.shared import agp_item, fraction, integer
from kdlab.prune import Iterative


def _iterative_inputs(generator):
    return (integer(generator, 0, 80), fraction(generator), integer(generator, 1, 6), integer(generator, 1, 15),
            integer(generator, 0, 20))


def iterative_reference(step, final, n_steps, every, start):
    return Iterative(final, n_steps, every, start=start).sparsity_at(step)


def _iterative_late(step, final, n_steps, every, start):
    if step < start:
        return 0.0
    return final * min(n_steps, (step - start) // every) / n_steps


def _iterative_uncapped(step, final, n_steps, every, start):
    if step < start:
        return 0.0
    return final * ((step - start) // every + 1) / n_steps


def _describe(names):
    return lambda args: ", ".join(f"{n}={v}" for n, v in zip(names, args))


ITEMS = [
    agp_item(
        "12.agp_sparsity", points=2,
        prompt="agp_sparsity(step, initial, final, start, end, frequency): 0 before start, final from "
               "end on, else s_f + (s_i - s_f) * (1 - (t_q - start) / (end - start))^3 with "
               "t_q = start + floor((step - start) / frequency) * frequency."),
    FunctionItem(
        "12.iterative_sparsity", points=1,
        prompt="iterative_sparsity(step, final, n_steps, every, start): 0 before start, else "
               "final * min(n_steps, floor((step - start) / every) + 1) / n_steps.",
        reference=iterative_reference, inputs=_iterative_inputs,
        describe=_describe(["step", "final", "n_steps", "every", "start"]),
        wrong=[
            (_iterative_late, "the first increment happens AT step `start`, not `every` steps later"),
            (_iterative_uncapped, "after n_steps increments the sparsity stays at final: cap the count"),
        ],
    ),
    ChoiceItem(
        "12.worst_budget", points=1,
        prompt="In lesson 12's budget experiment at 97% sparsity, which budget gives the lowest accuracy?",
        options=["global threshold", "uniform per layer", "from the scan"], answer="uniform per layer",
        hints={"global threshold": "look again: the global threshold loses a lot at 97%, but one budget "
                                   "loses more",
               "from the scan": "the scan-informed budget protects the fragile layer; it does best"},
    ),
    SetItem(
        "12.holding_schedules", points=1,
        prompt="Run one-shot, iterative (equal steps), iterative (geometric) and AGP to 97% sparsity "
               "with the same training steps: which end at least 10 points above one-shot on the "
               "validation part?",
        options=["iterative, equal steps", "iterative, geometric", "gradual cubic (AGP)"],
        answer=["iterative, geometric", "gradual cubic (AGP)"],
        hints={"iterative, equal steps": "equal increments leave the biggest cut for last: from 73% to "
                                         "97% removes 89% of the weights still left; compare with one-shot",
               "iterative, geometric": "compare the geometric rounds' final accuracy with one-shot's",
               "gradual cubic (AGP)": "compare AGP's final accuracy with one-shot's"},
    ),
]
