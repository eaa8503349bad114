"""Lesson 04 (choosing a pruning strategy): Taylor and SNIP scores, the L1 filter
score, network slimming's penalty on the BatchNorm scales, reading a sensitivity scan,
and matching the strategy to the hardware."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import integer
from kdlab.models import MLP
from kdlab.prune import ChannelGroup, channel_scores, gradient_scores, prunable_weights


def _model_batch(generator):
    """A random MLP and one batch (x, y) for it. A draw whose hidden units are all dead
    (every |g * w| exactly 0, so SNIP's normalisation is 0 / 0) is drawn again."""
    while True:
        in_features, classes = integer(generator, 2, 10), integer(generator, 2, 6)
        hidden = tuple(integer(generator, 2, 12) for _ in range(integer(generator, 1, 2)))
        model = MLP(in_features, hidden, classes)
        n = integer(generator, 4, 32)
        x = torch.randn(n, in_features, generator=generator)
        y = torch.randint(0, classes, (n,), generator=generator)
        if all(s.sum() > 0 for s in taylor_reference(model, x, y).values()):
            return model, x, y


def taylor_reference(model, x, y):
    return gradient_scores(model, (x, y), criterion="taylor", batch_size=len(x))


def snip_reference(model, x, y):
    return gradient_scores(model, (x, y), criterion="snip", batch_size=len(x))


def _products(model, x, y, with_biases=False):
    """{name: g * w} for the Linear weights (and biases) of one batch."""
    named = dict(model.named_parameters()) if with_biases else prunable_weights(model)
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(named.values()))
    return {n: (g * w).detach() for (n, w), g in zip(named.items(), grads)}


def _describe_batch(args) -> str:
    model, x, _ = args
    return f"an MLP {model.in_features}-{'-'.join(map(str, model.hidden))}-{model.num_classes} on {len(x)} examples"


def _conv_weight(generator):
    shape = (integer(generator, 2, 12), integer(generator, 1, 6), integer(generator, 1, 3), integer(generator, 1, 3))
    return (torch.randn(shape, generator=generator),)


def filter_l1_reference(weight):
    with torch.random.fork_rng(devices=[]):  # the learner's random state stays as it was
        conv = nn.Sequential(nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=False))
    with torch.no_grad():
        conv[0].weight.copy_(weight)
    return channel_scores(conv, [ChannelGroup(producers=["0"], channels=weight.shape[0])], criterion="l1")[0]



def _bn_model(generator):
    """A conv-BN and linear-BN network (2 or 3 BatchNorm layers) with random scales and shifts,
    and a penalty strength."""
    c1, c2, h = integer(generator, 2, 8), integer(generator, 2, 8), integer(generator, 2, 8)
    with torch.random.fork_rng(devices=[]):  # the learner's random state stays as it was
        layers = [nn.Conv2d(1, c1, 3), nn.BatchNorm2d(c1), nn.ReLU(), nn.Conv2d(c1, c2, 3), nn.BatchNorm2d(c2),
                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, h)]
        if integer(generator, 0, 1):
            layers += [nn.BatchNorm1d(h), nn.ReLU()]
        model = nn.Sequential(*layers, nn.Linear(h, 3))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator))
    return model, 10.0 ** -integer(generator, 1, 4)


def _bn(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def slimming_penalty_reference(model, strength):
    """Network slimming's sparsity term lambda * sum |gamma| over every BatchNorm scale of the
    model: the penalty whose subgradient kdlab.prune.BNScalePenalty adds to the scales' gradients."""
    return strength * sum(float(m.weight.detach().abs().sum()) for m in _bn(model))


def _describe_bn(args) -> str:
    model, strength = args
    return f"a network with {len(_bn(model))} BatchNorm layers, strength={strength:g}"

ITEMS = [
    FunctionItem(
        "04.taylor_scores", points=2,
        prompt="taylor_scores(model, x, y) -> {parameter name: (g * w)^2} for the weight of every "
               "nn.Linear, g the gradient of the cross-entropy of model(x) against y.",
        reference=taylor_reference, inputs=_model_batch, describe=_describe_batch, n_cases=10,
        wrong=[
            (lambda m, x, y: {n: p.abs() for n, p in _products(m, x, y).items()},
             "that is |g w|, the first-order magnitude; the Taylor score here is (g w)^2"),
            (lambda m, x, y: {n: p ** 2 for n, p in _products(m, x, y, with_biases=True).items()},
             "score only the weights of the Linear layers (names ending in .weight): biases are not pruned"),
        ],
        explain=lambda got, args: ("return a dict {parameter name: score tensor}"
                                   if not isinstance(got, dict) else None),
    ),
    FunctionItem(
        "04.snip_scores", points=2,
        prompt="snip_scores(model, x, y) -> {parameter name: |g * w| / sum over ALL Linear weights "
               "of |g * w|} (Lee et al. 2019).",
        reference=snip_reference, inputs=_model_batch, describe=_describe_batch, n_cases=10,
        wrong=[
            (lambda m, x, y: {n: p.abs() / p.abs().sum() for n, p in _products(m, x, y).items()},
             "you normalised each layer by its own sum; SNIP normalises by the sum over all "
             "layers, so scores compare across layers"),
            (lambda m, x, y: {n: p.abs() for n, p in _products(m, x, y).items()},
             "divide by the sum of |g w| over all the Linear weights (the scores sum to 1)"),
        ],
    ),
    FunctionItem(
        "04.filter_l1", points=1,
        prompt="filter_l1(weight) -> tensor of shape (out_channels,): s_j = sum of |K_j| over "
               "the input channels and kernel positions of output filter j (Li et al. 2017).",
        reference=filter_l1_reference, inputs=_conv_weight,
        wrong=[
            (lambda w: w.flatten(1).norm(dim=1), "that is the L2 norm; Li et al. use the L1 norm, sum |K_j|"),
            (lambda w: w.flatten(1).sum(1), "take absolute values before summing"),
            (lambda w: w.abs().flatten(1).mean(1),
             "that is the mean; it ranks the same, but the score is the sum of |K_j|"),
        ],
        explain=lambda got, args: ("one score per OUTPUT filter: reduce over dims 1, 2, 3"
                                   if isinstance(got, torch.Tensor) and got.shape != args[0].shape[:1]
                                   else None),
    ),
    FunctionItem(
        "04.slimming_penalty", points=1,
        prompt="slimming_penalty(model, strength) -> float: network slimming's sparsity term, strength "
               "* sum of |gamma| over the scales (weights) of EVERY BatchNorm layer of the model "
               "(Liu et al. 2017).",
        reference=slimming_penalty_reference, inputs=_bn_model, describe=_describe_bn, n_cases=10, atol=1e-9,
        wrong=[
            (lambda m, s: s * sum(float(b.weight.detach().abs().sum() + b.bias.detach().abs().sum()) for b in _bn(m)),
             "only the scales gamma (bn.weight) are penalised, not the shifts beta (bn.bias): a channel "
             "with gamma = 0 outputs the constant beta, which the next layer can absorb"),
            (lambda m, s: s * sum(float((b.weight.detach() ** 2).sum()) for b in _bn(m)),
             "that is an L2 penalty, which shrinks the scales without making them exactly small; "
             "slimming uses the L1 norm, sum |gamma|"),
            (lambda m, s: sum(float(b.weight.detach().abs().sum()) for b in _bn(m)),
             "multiply by strength (lambda): the penalty is lambda * sum |gamma|"),
            (lambda m, s: s * float(_bn(m)[-1].weight.detach().abs().sum()),
             "sum over every BatchNorm layer of the model, not only the last one"),
            (lambda m, s: s * sum(float(b.weight.detach().sum()) for b in _bn(m)),
             "take |gamma|: a large negative scale is as important as a large positive one"),
            (lambda m, s: s * float(torch.cat([b.weight.detach().abs() for b in _bn(m)]).mean()),
             "sum |gamma|, do not average it"),
        ],
    ),
    ChoiceItem(
        "04.most_sensitive", points=1,
        prompt="Run prune.sensitivity_scan on kdlab.models.pretrained('cnn-teacher', data=split) over "
               "split.val, split = data.load_digits(flat=False).with_validation(0.2): which layer loses "
               "the most accuracy when 70% of ITS weights are removed?",
        options=["features.0.0", "features.2.0", "classifier"], answer="features.0.0",
        hints={"features.2.0": "that layer holds most of the weights, which is why it is the most "
                               "robust; read the scan's accuracy at 0.7",
               "classifier": "read the scan's accuracy at 0.7 for every layer: one layer keeps less "
                             "than the classifier"},
    ),
    ChoiceItem(
        "04.dense_hardware", points=1,
        prompt="A model must run at least 5x fewer FLOPs on a phone CPU with dense kernels only. "
               "Which strategy delivers that?",
        options=["magnitude (unstructured)", "SNIP (unstructured)", "filter pruning"],
        answer="filter pruning",
        hint="print evaluate.flops of each pruned model: unstructured zeros are still multiplied",
    ),
]
