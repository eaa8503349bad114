"""Lesson 11 (optimising KD): the cosine temperature schedule, combining several teachers and the
spatial attention map of attention transfer."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdlab.distill import attention_map, cosine_temperature, linear_temperature, multi_teacher_targets
from kdlab.grading.registry import FunctionItem
from kdlab.grading.shared import integer, uniform


def _schedule_inputs(generator):
    start = uniform(generator, 1.0, 20.0)
    end = uniform(generator, 0.5, 20.0)
    epochs = integer(generator, 2, 39)
    epoch = integer(generator, 0, epochs + 2)
    return start, end, epochs, epoch


def _teacher_inputs(generator):
    k = integer(generator, 1, 4)
    n = integer(generator, 1, 8)
    c = integer(generator, 2, 10)
    temperature = uniform(generator, 0.5, 10.0)
    mode = ("logits", "probs")[integer(generator, 0, 1)]
    return torch.randn(k, n, c, generator=generator) * 4, temperature, mode


def _other_mode(z, T, mode):
    return multi_teacher_targets(z, temperature=T, mode="probs" if mode == "logits" else "logits")


def _map_inputs(generator):
    n, c = integer(generator, 1, 5), integer(generator, 1, 6)
    h, w = integer(generator, 1, 5), integer(generator, 2, 5)
    p = (1.0, 2.0, 3.0, 4.0)[integer(generator, 0, 3)]
    return torch.randn(n, c, h, w, generator=generator), p


def _raw_map(f, p):
    return f.abs().pow(p).sum(1).flatten(1)


ITEMS = [
    FunctionItem(
        "11.cosine_temperature", points=2,
        prompt="cosine_temperature(start, end, epochs, epoch) -> end + (start - end) * (1 + cos(pi * u)) / 2 "
               "with u = min(epoch / (epochs - 1), 1).",
        reference=lambda a, b, n, e: cosine_temperature(a, b, n)(e), inputs=_schedule_inputs,
        describe=lambda a: f"start {a[0]:.2f}, end {a[1]:.2f}, {a[2]} epochs, epoch {a[3]}", rtol=1e-6, atol=1e-6,
        wrong=[
            (lambda a, b, n, e: linear_temperature(a, b, n)(e), "that is the linear ramp; use the cosine shape"),
            (lambda a, b, n, e: cosine_temperature(b, a, n)(e), "the schedule starts at `start` and ends at `end`"),
            (lambda a, b, n, e: b + (a - b) * (1 + math.cos(math.pi * e / (n - 1))) / 2,
             "after the last epoch the temperature stays at `end`: clip u at 1"),
            (lambda a, b, n, e: b + (a - b) * (1 + math.cos(math.pi * min(e / n, 1))) / 2,
             "u reaches 1 at the last epoch, epochs - 1 (epochs count from 0)"),
        ],
    ),
    FunctionItem(
        "11.combine_teachers", points=2,
        prompt="combine_teachers(teacher_logits, temperature, mode) -> soft targets (N, C) from a (K, N, C) "
               "tensor: mode 'logits' = softmax(mean_k z_k / T), mode 'probs' = mean_k softmax(z_k / T).",
        reference=lambda z, T, mode: multi_teacher_targets(z, temperature=T, mode=mode), inputs=_teacher_inputs,
        describe=lambda a: f"{a[0].shape[0]} teachers, mode {a[2]!r}, T = {a[1]:.2f}", rtol=1e-5, atol=1e-6,
        wrong=[
            (_other_mode, "you swapped the two modes: 'logits' averages before the softmax, 'probs' after"),
            (lambda z, T, mode: multi_teacher_targets(z, temperature=1.0, mode=mode),
             "divide the logits by the temperature"),
            (lambda z, T, mode: torch.softmax(z / T, -1).sum(0), "average over the teachers, do not sum"),
        ],
    ),
    FunctionItem(
        "11.attention_map", points=2,
        prompt="attention_map(features, p) -> (N, H*W): the spatial attention of attention transfer for "
               "(N, C, H, W) features: Q = sum over the channels c of |A_c|^p, flattened to H*W values and "
               "divided by its l2 norm, one norm per example.",
        reference=lambda f, p: attention_map(f, p), inputs=_map_inputs,
        describe=lambda a: f"features of shape {tuple(a[0].shape)}, p = {a[1]:g}", rtol=1e-5, atol=1e-6,
        wrong=[
            (_raw_map, "divide each example's map by its l2 norm: the loss compares where a layer looks, "
                       "not how strongly it fires"),
            (lambda f, p: _raw_map(f, p) / _raw_map(f, p).norm(),
             "one norm per example (F.normalize(q, dim=1)), not one for the whole batch"),
            (lambda f, p: F.normalize(_raw_map(f, p).mean(0, keepdim=True).expand(len(f), -1), dim=1),
             "each example keeps its own map: do not average the maps over the batch"),
            (lambda f, p: F.normalize(_raw_map(f, 2.0), dim=1), "raise |A| to the power p, not always 2"),
            (lambda f, p: F.normalize(f.pow(p).sum(1).flatten(1), dim=1),
             "take the absolute value before the power: an odd p would let signs cancel"),
            (lambda f, p: F.normalize(f.abs().pow(p).sum((2, 3)), dim=1),
             "sum over the channels (dim 1) to get one value per position, not over the positions"),
        ],
    ),
]
