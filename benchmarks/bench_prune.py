"""Benchmark of kdlab.prune on the embedded digits data, on one CPU thread.

1. Accuracy vs sparsity of LeNet-300-100 for five criteria, before and after a
   short fine-tune with the masks kept (mean +- std over seeds).
2. Structured pruning of the course CNN (50% of the channels): parameters, FLOPs,
   latency at batch 64 against the dense model and a ``ln_structured`` masked copy,
   accuracy after fine-tuning.
3. Time of a training step with kept masks against a dense step, and with
   ``torch.nn.utils.prune``'s hooks.
4. File size at 90% sparsity.
5. torchvision resnet18 at 50% channel pruning against Torch-Pruning's figures.

Usage: python benchmarks/bench_prune.py [--quick]
Writes benchmarks/results/prune.md and prune_*.png beside it.
"""
from __future__ import annotations

import argparse
import copy
import io
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from kdlab import data, evaluate, models, plots, prune, train

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_MLP_LOSS_PT = 0.5
GOAL_SPEEDUP = 2.5
GOAL_CNN_LOSS_PT = 1.0
GOAL_STEP_OVERHEAD = 1.05
GOAL_SIZE_RATIO = 5.0
TORCH_PRUNING = {"params": (11.69e6, 3.06e6), "macs": (1.822e9, 0.487e9)}


def criteria(split):
    return {
        "magnitude (global)": lambda m, a, s: prune.magnitude_prune(m, a, scope="global"),
        "magnitude (layer)": lambda m, a, s: prune.magnitude_prune(m, a, scope="layer"),
        "random": lambda m, a, s: prune.random_prune(m, a, seed=s, scope="layer"),
        "taylor": lambda m, a, s: prune.gradient_prune(m, a, split, criterion="taylor", batches=4),
        "snip": lambda m, a, s: prune.gradient_prune(m, a, split, criterion="snip", batches=4),
    }


def accuracy_vs_sparsity(split, seeds, sparsities, finetune_epochs):
    """acc[method][phase] = seeds x sparsities accuracies (phase 'before'/'after')."""
    acc = {name: {"before": [], "after": []} for name in criteria(split)}
    dense = []
    for seed in seeds:
        base = models.pretrained("lenet-300-100", seed=seed, data=split)
        dense.append(evaluate.accuracy(base, split.test))
        for name, fn in criteria(split).items():
            before, after = [], []
            for amount in sparsities:
                model = copy.deepcopy(base)
                masks = fn(model, amount, seed)
                before.append(evaluate.accuracy(model, split.test))
                train.fit(model, split, epochs=finetune_epochs, lr=3e-3, scheduler="cosine", seed=seed,
                          callbacks=[masks.callback()], progress=False)
                assert prune.sparsity(model)["global"] >= amount - 1e-3
                after.append(evaluate.accuracy(model, split.test))
            acc[name]["before"].append(before)
            acc[name]["after"].append(after)
    return dense, acc


def interleaved_latency(models_, x, rounds, repeats):
    """Fastest ms per forward pass of each model, sampled in turn ``rounds`` times.
    Other processes on the machine only ever add time, so the minimum over the
    interleaved samples is the estimate they disturb least."""
    samples = {name: [] for name in models_}
    names = list(models_)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            samples[name] += evaluate.latency_samples(models_[name], x, warmup=3, repeats=repeats)
    return {name: min(s) for name, s in samples.items()}


OP_GROUPS = {"convolutions": ("conv",), "batch norm": ("batch_norm",), "ReLU": ("relu", "clamp_min"),
             "max-pool": ("max_pool",)}


def op_breakdown(model, x, iters):
    """Milliseconds per forward pass spent in each group of operators (profiler self
    time, so the groups add up to the whole; the profiler itself adds some time)."""
    from torch.profiler import ProfilerActivity, profile

    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                model(x)
    totals = dict.fromkeys([*OP_GROUPS, "everything else"], 0.0)
    for event in prof.key_averages():
        group = next((g for g, keys in OP_GROUPS.items() if any(k in event.key for k in keys)), "everything else")
        totals[group] += event.self_cpu_time_total / 1e3 / iters
    return totals


def kernel_checks(repeats):
    """The max-pool kernel on its own (ms), on the dense CNN's first feature map shape."""
    import torch.nn.functional as F

    def ms(fn):
        return min(evaluate.latency_samples(_Call(fn), torch.zeros(1), warmup=3, repeats=repeats))

    gen = torch.Generator().manual_seed(0)
    out = {}
    a = torch.randn(64, 32, 8, 8, generator=gen)
    half = a.clone()
    half[:, ::2] = 0.5  # every other channel constant, as after a zeroed channel's BN and ReLU
    out["max-pool, random values"] = ms(lambda _: F.max_pool2d(a, 2))
    out["max-pool, half the channels constant"] = ms(lambda _: F.max_pool2d(half, 2))
    cl = a.contiguous(memory_format=torch.channels_last)
    out["max-pool, random values, channels-last layout"] = ms(lambda _: F.max_pool2d(cl, 2))
    return out


class _Call(nn.Module):
    """A function as a module, so evaluate.latency_samples can time it."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class MaxPool2x2(nn.Module):
    """2x2, stride-2 max-pooling as two elementwise maxima over strided views: the
    same values as ``nn.MaxPool2d(2)`` (max is exact) for even sizes, without the
    NCHW kernel's per-element branches. Inference only here: on ties its gradient
    would be split, where max-pool's goes to one input."""

    def forward(self, x):
        rows = torch.maximum(x[..., ::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., ::2], rows[..., 1::2])


def with_fast_pool(model):
    """A copy of a SmallCNN whose max-pools are :class:`MaxPool2x2`."""
    fast = copy.deepcopy(model).eval()
    for i, module in enumerate(fast.features):
        if isinstance(module, nn.MaxPool2d):
            fast.features[i] = MaxPool2x2()
    return fast


def ln_structured_copy(model, amount):
    masked = copy.deepcopy(model)
    for m in masked.modules():
        if isinstance(m, nn.Conv2d):
            torch_prune.ln_structured(m, "weight", amount=amount, n=1, dim=0)
    return masked


def structured_cnn(split, quick):
    dense = models.pretrained("cnn-teacher", data=split).eval()
    example = split.x_test[:64]
    small = prune.structured_prune(dense, 0.5, example, criterion="l1")
    acc_before = evaluate.accuracy(small, split.test)
    epochs = 3 if quick else 30
    train.fit(small, split, epochs=epochs, lr=3e-3, scheduler="cosine", progress=False)
    row = {"dense_acc": evaluate.accuracy(dense, split.test), "pruned_acc_before": acc_before,
           "pruned_acc_after": evaluate.accuracy(small, split.test), "finetune_epochs": epochs,
           "params": (evaluate.count_parameters(dense), evaluate.count_parameters(small))}
    masked = ln_structured_copy(dense, 0.5)
    rounds, repeats = (3, 5) if quick else (12, 10)
    for side in (8, 32):
        x = example if side == 8 else torch.randn(64, 1, side, side, generator=torch.Generator().manual_seed(0))
        row[f"flops{side}"] = (evaluate.flops(dense, x), evaluate.flops(small, x))
        fast_dense, fast_small = with_fast_pool(dense), with_fast_pool(small)
        assert torch.equal(fast_dense(x), dense(x)) and torch.equal(fast_small(x), small.eval()(x))
        row[f"latency{side}"] = interleaved_latency(
            {"dense": dense, "structured": small, "ln_structured mask": masked,
             "dense, fast max-pool": fast_dense, "structured, fast max-pool": fast_small}, x, rounds, repeats)
        row[f"ops{side}"] = {name: op_breakdown(m, x, 20 if quick else 100)
                             for name, m in (("dense", dense), ("structured", small))}
    row["kernels"] = kernel_checks(5 if quick else 20)
    return row


def step_overhead(quick):
    """ms per training step (Adam, batch 64) of dense, kdlab masks and torch prune hooks, in two
    settings: fine-tuning a trained model on digit batches after pruning it (the case masks are
    kept for), and a freshly initialised model on random inputs, where global pruning of
    untrained weights can cut off whole units and leave exact zeros in Adam's state."""
    split = data.load_digits()
    gen = torch.Generator().manual_seed(0)
    settings = {
        "fine-tuning (trained, digits)": (lambda p: models.pretrained(p, data=split).train(),
                                          split.x_train[:64], split.y_train[:64]),
        "fresh init, random inputs": (lambda p: models.create(p), torch.randn(64, 64, generator=gen),
                                      torch.randint(0, 10, (64,), generator=gen)),
    }
    out = {}
    for setting, (build, x, y) in settings.items():
        for preset in ("lenet-300-100", "mlp-teacher"):
            torch.manual_seed(0)
            base = build(preset)
            variants = {}
            for name in ("dense", "kdlab masks", "torch prune hooks"):
                model = copy.deepcopy(base)
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                if name == "kdlab masks":
                    prune.magnitude_prune(model, 0.9).attach(opt)
                elif name == "torch prune hooks":
                    linears = [(m, "weight") for m in model.modules() if isinstance(m, nn.Linear)]
                    torch_prune.global_unstructured(linears, pruning_method=torch_prune.L1Unstructured,
                                                    amount=0.9)
                    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # weight_orig is the parameter now
                variants[name] = (model, opt)

            def run(model, opt, n):
                start = time.perf_counter()
                for _ in range(n):
                    opt.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(model(x), y).backward()
                    opt.step()
                return (time.perf_counter() - start) / n * 1e3

            for model, opt in variants.values():
                run(model, opt, 20)
            samples = {name: [] for name in variants}
            rounds, steps = (3, 20) if quick else (30, 40)
            names = list(variants)
            for r in range(rounds):
                for name in names[r % 3:] + names[:r % 3]:  # rotate who goes first
                    samples[name].append(run(*variants[name], steps))
            out[(setting, preset)] = {name: min(s) for name, s in samples.items()}  # least disturbed by load
    return out


def file_sizes():
    torch.manual_seed(0)
    model = models.pretrained("lenet-300-100")
    dense = evaluate.model_size_bytes(model)
    torch_model = copy.deepcopy(model)
    linears = [(m, "weight") for m in torch_model.modules() if isinstance(m, nn.Linear)]
    torch_prune.global_unstructured(linears, pruning_method=torch_prune.L1Unstructured, amount=0.9)
    torch_masked = evaluate.model_size_bytes(torch_model)
    prune.magnitude_prune(model, 0.9)
    buffer = io.BytesIO()
    prune.save_sparse(model, buffer)
    buffer.seek(0)
    restored = prune.load_sparse(buffer, models.pretrained("lenet-300-100"))
    exact = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), restored.state_dict().values()))
    return {"dense torch.save": dense, "torch.nn.utils.prune state_dict": torch_masked,
            "zeros, dense torch.save": evaluate.model_size_bytes(model),
            "kdlab save_sparse": prune.sparse_size_bytes(model)}, exact


def resnet18_figures():
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    start = time.perf_counter()
    small = prune.structured_prune(net, 0.5, x)
    seconds = time.perf_counter() - start
    return {"params": (evaluate.count_parameters(net), evaluate.count_parameters(small)),
            "macs": (evaluate.macs(net, x), evaluate.macs(small, x)), "seconds": seconds,
            "groups": len(prune.channel_groups(net, x))}


def verdict(ok):
    return "met" if ok else "**not met**"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, few points")
    args = parser.parse_args(argv)
    train.seed_everything(0, threads=1)
    os.environ.setdefault("KDLAB_PROGRESS", "0")
    started = time.perf_counter()
    flat, images = data.load_digits(), data.load_digits(flat=False)
    seeds = [0] if args.quick else [0, 1, 2]
    sparsities = [0.0, 0.9] if args.quick else [0.0, 0.5, 0.8, 0.9, 0.95, 0.98]
    ft_epochs = 2 if args.quick else 30

    dense_acc, acc = accuracy_vs_sparsity(flat, seeds, sparsities, ft_epochs)
    cnn = structured_cnn(images, args.quick)
    steps = step_overhead(args.quick)
    sizes, exact = file_sizes()
    resnet = resnet18_figures()
    write_report(args, seeds, sparsities, ft_epochs, dense_acc, acc, cnn, steps, sizes, exact, resnet,
                 time.perf_counter() - started)


def mean(xs):
    return sum(xs) / len(xs)


def write_report(args, seeds, sparsities, ft_epochs, dense_acc, acc, cnn, steps, sizes, exact, resnet,
                 seconds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = "_quick" if args.quick else ""
    lines = [f"# kdlab.prune benchmark{' (--quick smoke run)' if args.quick else ''}", "",
             f"Machine: `{platform.processor() or platform.machine()}`, {os.cpu_count()} CPUs, "
             f"torch {torch.__version__}, 1 thread; other processes shared the CPUs, so timings "
             f"interleave the compared models in the same run and report the fastest sample "
             f"(load only adds time). Total run time {seconds:.0f} s.", ""]

    # 1. accuracy vs sparsity
    xs = [100 * s for s in sparsities]
    base = mean(dense_acc)
    lines += ["## 1. Accuracy vs sparsity, LeNet-300-100 on digits", "",
              f"Trained models: `models.pretrained('lenet-300-100', seed=s)` for seeds {seeds}; dense test "
              f"accuracy {100 * base:.2f}% (mean). Each criterion prunes the trained model once "
              f"(taylor and snip from 4 batches of 128 training images; snip is |g*w| normalised, "
              f"here on the trained network), then {ft_epochs} epochs of Adam (lr 3e-3, cosine) with the masks "
              f"kept. Test accuracy in %, mean over {len(seeds)} seed(s) (std in the plot).", "",
              "| criterion | phase | " + " | ".join(f"{x:g}%" for x in xs) + " |",
              "|---|---|" + "---|" * len(xs)]
    for name, phases in acc.items():
        for phase, runs in phases.items():
            means = [100 * mean([r[i] for r in runs]) for i in range(len(xs))]
            lines.append(f"| {name} | {phase} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    i90 = sparsities.index(0.9)
    after90 = mean([r[i90] for r in acc["magnitude (global)"]["after"]])
    loss = 100 * (base - after90)
    dense_ft = mean([r[0] for r in acc["magnitude (global)"]["after"]])
    lines += ["", f"Goal: at 90% sparsity (global magnitude) lose <= {GOAL_MLP_LOSS_PT} pt after "
              f"fine-tuning. Measured: {100 * after90:.2f}% vs the dense model's {100 * base:.2f}% = "
              f"{loss:+.2f} pt lost: {verdict(loss <= GOAL_MLP_LOSS_PT)} (the dense model fine-tuned "
              f"with the same recipe reaches {100 * dense_ft:.2f}%, the 0% 'after' column).", "",
              f"![accuracy vs sparsity](prune_accuracy_vs_sparsity{suffix}.png)", ""]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, phase in zip(axes, ("before", "after")):
        plots.mean_std_plot(xs, {n: [[100 * a for a in r] for r in p[phase]] for n, p in acc.items()},
                            xlabel="weights removed (%)", ylabel="test accuracy (%)", ax=ax)
        ax.set_title(f"LeNet-300-100, {phase} fine-tuning")
        ax.axhline(100 * base, color="gray", linestyle="--")
    fig.tight_layout()
    fig.savefig(RESULTS / f"prune_accuracy_vs_sparsity{suffix}.png", dpi=110)
    plt.close(fig)

    # 2. structured CNN
    p_dense, p_small = cnn["params"]
    lines += ["## 2. Structured pruning of the course CNN (`cnn-teacher`, 50% of channels, L1)", "",
              f"Parameters {p_dense:,} -> {p_small:,} ({p_dense / p_small:.2f}x fewer). Accuracy: dense "
              f"{100 * cnn['dense_acc']:.2f}%, pruned {100 * cnn['pruned_acc_before']:.2f}% before and "
              f"{100 * cnn['pruned_acc_after']:.2f}% after {cnn['finetune_epochs']} epochs of fine-tuning.", "",
              "| input (batch 64) | model | MFLOPs | latency ms | speed-up | speed-up / FLOP ratio |",
              "|---|---|---|---|---|---|"]
    speedups = {}
    for side in (8, 32):
        fd, fs = cnn[f"flops{side}"]
        lat = cnn[f"latency{side}"]
        label = "8x8 digits" if side == 8 else "32x32 random (timing only)"
        for name, ms in lat.items():
            flops = fs if name.startswith("structured") else fd
            base = lat["dense, fast max-pool" if name.endswith("fast max-pool") else "dense"]
            sp = base / ms
            speedups[(side, name)] = sp
            lines.append(f"| {label} | {name} | {flops / 1e6:.2f} | {ms:.3f} | {sp:.2f}x | "
                         f"{sp / (fd / flops):.2f} |")
    cnn_loss = 100 * (cnn["dense_acc"] - cnn["pruned_acc_after"])
    sp8, sp32 = speedups[(8, "structured")], speedups[(32, "structured")]
    fast8, fast32 = speedups[(8, "structured, fast max-pool")], speedups[(32, "structured, fast max-pool")]
    flop32 = cnn["flops32"][0] / cnn["flops32"][1]
    above = [f"{side}x{side} {name}" for (side, name), sp in speedups.items()
             if name.startswith("structured") and sp > cnn[f"flops{side}"][0] / cnn[f"flops{side}"][1]]
    lines += ["", "Speed-ups are against the dense model with the same pooling; the fast max-pool rows use "
              "two elementwise maxima over strided views, which give exactly the values of `nn.MaxPool2d(2)` "
              "(checked), in place of PyTorch's default max-pool kernel.", "",
              f"FLOP ratio (the ceiling): {cnn['flops8'][0] / cnn['flops8'][1]:.2f}x. "
              f"Goal >= {GOAL_SPEEDUP}x lower latency: {sp8:.2f}x on the 8x8 digits "
              f"({verdict(sp8 >= GOAL_SPEEDUP)}), {sp32:.2f}x on 32x32 inputs "
              f"({verdict(sp32 >= GOAL_SPEEDUP)}); with the fast max-pool {fast8:.2f}x and {fast32:.2f}x. "
              f"The `ln_structured` copy keeps every channel (zeros are multiplied too) and adds a forward "
              f"pre-hook: {speedups[(8, 'ln_structured mask')]:.2f}x / "
              f"{speedups[(32, 'ln_structured mask')]:.2f}x.",
              f"Goal: accuracy within {GOAL_CNN_LOSS_PT} pt after fine-tuning: {cnn_loss:+.2f} pt lost, "
              f"{verdict(cnn_loss <= GOAL_CNN_LOSS_PT)}.", "",
              "Where the time goes with the default kernels (ms per forward pass at batch 64, profiler self "
              "time by operator group; the profiler adds some time of its own):", "",
              "| input | model | " + " | ".join(next(iter(cnn["ops8"].values()))) + " |",
              "|---|---|" + "---|" * len(next(iter(cnn["ops8"].values())))]
    for side in (8, 32):
        for name, ops in cnn[f"ops{side}"].items():
            lines.append(f"| {side}x{side} | {name} | " + " | ".join(f"{v:.3f}" for v in ops.values()) + " |")
        d, s_ = cnn[f"ops{side}"]["dense"], cnn[f"ops{side}"]["structured"]
        lines.append(f"| {side}x{side} | dense / structured | "
                     + " | ".join(f"{d[g] / s_[g]:.2f}x" if s_[g] > 0 else "" for g in d) + " |")
    ops8 = cnn["ops8"]["dense"]
    pool_share = 100 * ops8["max-pool"] / sum(ops8.values())
    lines += ["",
              f"Why the latency ratio stays below the FLOP ratio: halving the channels divides the FLOPs of "
              f"the second convolution by 4, but the work of the first convolution (1 input channel), "
              f"BatchNorm, ReLU and max-pool only by 2. On the 8x8 digits PyTorch's default max-pool kernel "
              f"takes {pool_share:.0f}% of the dense model's time and its cost only halves. That kernel is "
              f"slow, and its speed depends on the values, which is also why the `ln_structured` copy (same "
              f"FLOPs, zeroed channels that pool constants) runs faster than the dense model. The kernel "
              f"alone, on a (64, 32, 8, 8) feature map:", "",
              "| max-pool input | ms |", "|---|---|"]
    lines += [f"| {k.removeprefix('max-pool, ')} | {v:.3f} |" for k, v in cnn["kernels"].items()]
    lines += ["",
              f"An exact max-pool without that kernel makes both models faster "
              f"({cnn['latency8']['dense'] / cnn['latency8']['dense, fast max-pool']:.1f}x the dense model's "
              f"speed on 8x8 inputs). On 8x8 inputs the pruning ratio then "
              f"{'falls' if fast8 < sp8 else 'rises'} to {fast8:.2f}x: what remains of each layer is largely "
              f"a fixed cost per call, which pruning does not shrink. On 32x32 inputs, where the "
              f"convolutions carry the work, it {'rises' if fast32 > sp32 else 'falls'} to {fast32:.2f}x.",
              ""]
    if above:
        lines += [f"A speed-up above the FLOP ratio ({', '.join(above)}) cannot come from doing less work: "
                  f"the dense model ran a kernel slower per FLOP than the pruned one (oneDNN picks the "
                  f"convolution algorithm by shape), so such a row overstates what pruning buys.", ""]
    if max(sp8, fast8) < GOAL_SPEEDUP <= fast32:
        lines += [f"So on this CPU a {GOAL_SPEEDUP}x lower latency at batch 64 is out of reach for this "
                  f"network on 8x8 inputs; it needs inputs large enough for the convolutions to dominate, "
                  f"and a pooling kernel that is not the bottleneck.", ""]

    # 3. step overhead
    lines += ["## 3. Training-step time with kept masks (Adam, batch 64, 90% sparsity)", "",
              "| setting | model | dense ms | kdlab masks ms | ratio | torch prune hooks ms | ratio |",
              "|---|---|---|---|---|---|---|"]
    worst = {}
    for (setting, preset), t in steps.items():
        r1, r2 = t["kdlab masks"] / t["dense"], t["torch prune hooks"] / t["dense"]
        worst[setting] = max(worst.get(setting, 0.0), r1)
        lines.append(f"| {setting} | {preset} | {t['dense']:.3f} | {t['kdlab masks']:.3f} | {r1:.3f}x | "
                     f"{t['torch prune hooks']:.3f} | {r2:.3f}x |")
    fine_tuning, fresh = worst["fine-tuning (trained, digits)"], worst["fresh init, random inputs"]
    lines += ["", f"Goal <= {GOAL_STEP_OVERHEAD}x when fine-tuning a pruned trained model: worst "
              f"{fine_tuning:.3f}x, {verdict(fine_tuning <= GOAL_STEP_OVERHEAD)}. On a fresh model, "
              f"global pruning of untrained weights can cut off whole units; their weights then get "
              f"exact-zero gradients, and Adam's square root is slow on the zeros this leaves in its "
              f"state (dense training never has them): worst {fresh:.3f}x.", ""]

    # 4. file size
    dense_bytes = sizes["dense torch.save"]
    lines += ["## 4. File size of LeNet-300-100 at 90% sparsity (global magnitude)", "",
              "| file | bytes | vs dense |", "|---|---|---|"]
    for name, b in sizes.items():
        lines.append(f"| {name} | {b:,} | {dense_bytes / b:.2f}x smaller |")
    ratio = dense_bytes / sizes["kdlab save_sparse"]
    lines += ["", f"Goal: save_sparse >= {GOAL_SIZE_RATIO}x smaller than dense: {ratio:.2f}x, "
              f"{verdict(ratio >= GOAL_SIZE_RATIO)}; round trip exact: {exact}.", ""]

    # 5. resnet18
    (pd, ps), (md, ms) = resnet["params"], resnet["macs"]
    (tpd, tps), (tmd, tms) = TORCH_PRUNING["params"], TORCH_PRUNING["macs"]
    lines += ["## 5. torchvision resnet18 (weights=None), 50% channel pruning, input 1x3x224x224", "",
              f"{resnet['groups']} prunable channel groups found by `torch.export` tracing (residual "
              f"channels tied per stage); pruning took {resnet['seconds']:.1f} s.", "",
              "| | params dense | params pruned | MACs dense | MACs pruned |", "|---|---|---|---|---|",
              f"| kdlab | {pd / 1e6:.2f}M | {ps / 1e6:.2f}M | {md / 1e9:.3f}G | {ms / 1e9:.3f}G |",
              f"| Torch-Pruning (published) | {tpd / 1e6:.2f}M | {tps / 1e6:.2f}M | {tmd / 1e9:.3f}G | "
              f"{tms / 1e9:.3f}G |", "",
              "kdlab counts MACs with `torch.utils.flop_counter` (convolutions and matrix products only); "
              "Torch-Pruning's counter also counts BatchNorm, ReLU, pooling and additions, hence its "
              "slightly higher dense figure.", ""]
    yes = lambda ok: "yes" if ok else "no"  # noqa: E731
    lines += ["## Goals", "", "| goal | measured | met |", "|---|---|---|",
              f"| LeNet-300-100 at 90% sparsity loses <= {GOAL_MLP_LOSS_PT} pt after fine-tuning | "
              f"{loss:+.2f} pt lost | {yes(loss <= GOAL_MLP_LOSS_PT)} |",
              f"| course CNN, 50% channels: >= {GOAL_SPEEDUP}x lower latency at batch 64, 8x8 digits | "
              f"{sp8:.2f}x (FLOP ratio {cnn['flops8'][0] / cnn['flops8'][1]:.2f}x) | {yes(sp8 >= GOAL_SPEEDUP)} |",
              f"| same, 32x32 random inputs (shown; timing only, kernel effects in section 2) | {sp32:.2f}x "
              f"(speed-up / FLOP ratio {sp32 / flop32:.2f}) | {yes(sp32 >= GOAL_SPEEDUP)} |",
              f"| same, 32x32, exact fast max-pool in both models (shown) | {fast32:.2f}x "
              f"(speed-up / FLOP ratio {fast32 / flop32:.2f}) | {yes(fast32 >= GOAL_SPEEDUP)} |",
              f"| course CNN, 50% channels: accuracy within {GOAL_CNN_LOSS_PT} pt after fine-tuning | "
              f"{cnn_loss:+.2f} pt lost | {yes(cnn_loss <= GOAL_CNN_LOSS_PT)} |",
              f"| training step with kept masks <= {GOAL_STEP_OVERHEAD}x a dense step, fine-tuning a pruned "
              f"trained model | worst {fine_tuning:.3f}x | {yes(fine_tuning <= GOAL_STEP_OVERHEAD)} |",
              f"| same, fresh init on random inputs (shown, not the goal's case) | worst {fresh:.3f}x | "
              f"{yes(fresh <= GOAL_STEP_OVERHEAD)} |",
              f"| save_sparse >= {GOAL_SIZE_RATIO}x smaller than dense at 90% sparsity, exact round trip | "
              f"{ratio:.2f}x, exact: {exact} | {yes(ratio >= GOAL_SIZE_RATIO and exact)} |",
              f"| resnet18 at 50% channels next to Torch-Pruning (11.69M -> 3.06M params, 1.822G -> 0.487G MACs) | "
              f"{pd / 1e6:.2f}M -> {ps / 1e6:.2f}M params, {md / 1e9:.3f}G -> {ms / 1e9:.3f}G MACs | "
              f"{yes(abs(ps - tps) / tps < 0.02 and abs(ms - tms) / tms < 0.02)} (within 2%) |", ""]
    name = f"prune{suffix}.md"
    (RESULTS / name).write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"\nwritten {RESULTS / name}")


if __name__ == "__main__":
    main()
