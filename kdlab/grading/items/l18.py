"""Lesson 18 (pruning beyond CNNs): the L1 score of attention heads, and choosing a
score for embedding rows."""
from __future__ import annotations

import torch

from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import integer
from kdlab.models import MultiHeadSelfAttention
from kdlab.prune import head_scores


def _head_inputs(generator):
    heads, head_dim = integer(generator, 2, 6), integer(generator, 1, 5)
    d_model = integer(generator, 2, 12)
    return torch.randn(d_model, heads * head_dim, generator=generator), heads


def head_l1_reference(out_weight, heads):
    d_model, inner = out_weight.shape
    with torch.random.fork_rng(devices=[]):  # the learner's random state stays as it was
        attn = MultiHeadSelfAttention(d_model, heads, head_dim=inner // heads)
    with torch.no_grad():
        attn.out.weight.copy_(out_weight)
    return head_scores(attn)[0]


def _rows_split(w, heads):
    return w.abs().reshape(heads, -1).sum(1)


def _strided(w, heads):
    return w.abs().reshape(w.shape[0], -1, heads).sum((0, 1))


ITEMS = [
    FunctionItem(
        "18.head_l1", points=2,
        prompt="head_l1(out_weight, heads) -> tensor (heads,): the L1 norm of the columns of the "
               "attention output projection (shape (d_model, heads * head_dim)) that read each head; "
               "head h owns columns h*head_dim:(h+1)*head_dim.",
        reference=head_l1_reference, inputs=_head_inputs,
        describe=lambda a: f"out_weight of shape {tuple(a[0].shape)} with {a[1]} heads",
        wrong=[
            (_strided, "head h owns a contiguous block of columns, h*head_dim:(h+1)*head_dim, "
                       "not every heads-th column"),
            (_rows_split, "you split the rows (d_model); a head is a block of COLUMNS of the output "
                          "projection (its input dimension)"),
            (lambda w, heads: w.reshape(w.shape[0], heads, -1).sum((0, 2)),
             "take absolute values before summing"),
        ],
    ),
    ChoiceItem(
        "18.row_score", points=1,
        prompt="Removing 80% of the item embedding rows of the click recommender without retraining: "
               "which score keeps more accuracy?",
        options=["l2", "frequency"], answer="frequency",
        hints={"l2": "run both scores at 0.8 and compare: the norm of a row says nothing about how "
                     "often the item is clicked"},
    ),
]
