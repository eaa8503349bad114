"""Benchmark of kdlab.prune on the embedded digits data, on one CPU thread.

1. Accuracy vs sparsity of LeNet-300-100 for five criteria, before and after a
   short fine-tune with the masks kept (mean +- std over seeds).
2. Structured pruning of the course CNN (50% of the channels): parameters, FLOPs,
   latency at batch 64 against the dense model and a ``ln_structured`` masked copy
   (speed-up and latency/FLOP ratio shown, no goal), accuracy after fine-tuning.
3. Time of a training step with kept masks against a dense step, and with
   ``torch.nn.utils.prune``'s hooks.
4. File size at 90% sparsity.
5. Every torchvision classification model (``weights=None``) at ``amount=0.5``, kdlab and
   Torch-Pruning (``MagnitudePruner``, ``MagnitudeImportance(p=1)``, classifier ignored)
   in the same run: coverage, exactness, MACs removed, time to prune. Each model runs
   in its own process with a memory limit, so one that exhausts memory is recorded,
   not fatal.
6. 1-thread CPU latency at batch 8 of five models, dense / kdlab / Torch-Pruning
   interleaved in one process, median of the samples.

Torch-Pruning is installed for the benchmark only: ``pip install -e .[bench]``. Without it
sections 5 and 6 run kdlab alone and say so.

Usage: python benchmarks/bench_prune.py [--quick] [--models resnet18,vit_b_16]
       python benchmarks/bench_prune.py --steps   # section 3 alone, rewritten in results/prune.md
Writes benchmarks/results/prune.md and prune_*.png beside it.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from kdlab import data, evaluate, models, plots, prune, train

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_MLP_LOSS_PT = 0.5
GOAL_CNN_LOSS_PT = 1.0
GOAL_STEP_OVERHEAD = 1.05
GOAL_SIZE_RATIO = 5.0
GOAL_MACS_VS_TP = 0.95
EXACT_RTOL = 1e-4
AMOUNT = 0.5
SPEED_MODELS = ("resnet18", "mobilenet_v2", "efficientnet_b0", "densenet121", "vit_b_16")
SPEED_BATCH, SPEED_SIDE, SPEED_ROUNDS = 8, 224, 24
WORKER_MEMORY_GB, WORKER_TIMEOUT_S = 11, 3600
QUICK_MODELS = ("resnet18", "mobilenet_v2", "shufflenet_v2_x0_5", "vit_b_16")


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
    restored = prune.load_sparse(models.pretrained("lenet-300-100"), buffer)
    exact = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), restored.state_dict().values()))
    return {"dense torch.save": dense, "torch.nn.utils.prune state_dict": torch_masked,
            "zeros, dense torch.save": evaluate.model_size_bytes(model),
            "kdlab save_sparse": prune.sparse_size_bytes(model)}, exact


# ---------------------------------------------------------------- 5. torchvision sweep

def torch_pruning():
    """The installed Torch-Pruning module, or None (the report then says it is missing)."""
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    return tp


def image_side(name: str) -> int:
    """A small input the model accepts: ViTs and MaxViT need 224, Inception v3 at least 75."""
    if name.startswith(("vit_", "maxvit")):
        return 224
    return 128 if name.startswith("inception") else 64


def build(name: str, side: int, batch: int = 2):
    """``torchvision.models.get_model(name, weights=None)`` in eval mode with random BatchNorm
    statistics and no all-zero weight (torchvision zero-initialises some heads), so that
    zeroed channels are a real test; and an input batch."""
    import torchvision

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notes on init choices of some models
        model = torchvision.models.get_model(name, weights=None).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        for p in model.parameters():
            if p.numel() > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return model, torch.randn(batch, 3, side, side, generator=gen)


def classifier_layers(model, num_classes: int = 1000) -> list:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
            and getattr(m, "out_features", getattr(m, "out_channels", None)) == num_classes]


def tp_prune(tp, model, x):
    """Torch-Pruning as the issue measured it: MagnitudePruner, L1 magnitude, classifier ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
                                           pruning_ratio=AMOUNT, ignored_layers=classifier_layers(model))
        pruner.step()
    return model


def vit_patch(model):
    """The fix Torch-Pruning's own ViT example applies after pruning: torchvision's ViT reshapes
    with ``self.hidden_dim``, which Torch-Pruning does not update."""
    if hasattr(model, "hidden_dim") and hasattr(model, "conv_proj"):
        model.hidden_dim = model.conv_proj.out_channels
    return model


def first_line(e) -> str:
    text = next((line for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {text[:160]}"


def sweep_worker(tool: str, name: str, out: Path) -> None:
    """Prune one model with one tool and write what was measured to ``out`` as JSON."""
    torch.set_num_threads(1)
    side = image_side(name)
    model, x = build(name, side)
    result = {"model": name, "side": side, "params": evaluate.count_parameters(model)}
    # room for a few copies of the model on top of what the process holds now, the same for both tools
    extra = max(3 * 1024 ** 3, 4 * sum(t.numel() * t.element_size() for t in model.state_dict().values()))
    cap = min(virtual_bytes() + extra, WORKER_MEMORY_GB * 1024 ** 3)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out.write_text(json.dumps(result))
    with torch.no_grad():
        shape = tuple(model(x).shape)
    result["macs"] = evaluate.macs(model, x)
    if tool == "kdlab":
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            selection = prune.select_channels(model, AMOUNT, x)
            small = prune.remove_channels(model, selection)
        result["seconds"] = time.perf_counter() - start
        result["warnings"] = [str(w.message)[:200] for w in caught if issubclass(w.category, UserWarning)]
        from kdlab.prune.graph import groups_of

        all_groups = groups_of(selection.graph)
        result["groups"] = (sum(not g.frozen for g in all_groups), len(all_groups))
        result["layernorm"] = any(g.stats_over_channels for g, _ in selection)
        out.write_text(json.dumps(result))
        with torch.no_grad():
            got = small(x)
            reference = prune.zero_channels(model, selection).eval()(x)
        result["shape_ok"] = tuple(got.shape) == shape
        result["rel_error"] = float((got - reference).abs().max() / reference.abs().max().clamp(min=1e-30))
        result["pruned_macs"] = evaluate.macs(small, x)
        result["pruned_params"] = evaluate.count_parameters(small)
    else:
        tp = torch_pruning()
        net = copy.deepcopy(model)
        start = time.perf_counter()
        try:
            tp_prune(tp, net, x)
        except (Exception, MemoryError) as e:  # noqa: BLE001 - any failure of the other tool is a result
            result["status"] = f"fails: {first_line(e)}"
            out.write_text(json.dumps(result))
            return
        result["seconds"] = time.perf_counter() - start
        try:
            with torch.no_grad():
                got = net(x)
            result["status"] = "ok" if tuple(got.shape) == shape else f"breaks the model: output {tuple(got.shape)}"
        except Exception as e:  # noqa: BLE001
            result["status"] = f"breaks the model: {first_line(e)}"
            try:
                with torch.no_grad():
                    vit_patch(net)(x)
                result["patched"] = True
            except Exception:  # noqa: BLE001
                out.write_text(json.dumps(result))
                return
        result["pruned_macs"] = evaluate.macs(net, x)
        result["pruned_params"] = evaluate.count_parameters(net)
    out.write_text(json.dumps(result))


def virtual_bytes() -> int:
    """Virtual memory of this process (what RLIMIT_AS limits)."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    return kb * 1024


def run_worker(tool: str, name: str) -> dict:
    """:func:`sweep_worker` in a fresh process under a memory limit and a timeout."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        limit = WORKER_MEMORY_GB * 1024 ** 3

        def cap():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        cmd = [sys.executable, __file__, "--worker", tool, name, str(out)]
        try:
            proc = subprocess.run(cmd, preexec_fn=cap, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
            code, tail = proc.returncode, (proc.stderr or "").strip().splitlines()[-1:]
        except subprocess.TimeoutExpired:
            code, tail = "timeout", [f"no result after {WORKER_TIMEOUT_S} s"]
        result = json.loads(out.read_text()) if out.exists() else {"model": name}
        if code != 0 and "status" not in result:
            reason = "out of memory" if any("MemoryError" in t for t in tail) else (tail[0][:160] if tail else code)
            result["status"] = f"process ended ({reason})"
        return result


def sweep(names, have_tp: bool) -> dict:
    rows = {}
    for name in names:
        started = time.perf_counter()
        row = {"kdlab": run_worker("kdlab", name)}
        if have_tp:
            row["tp"] = run_worker("tp", name)
        rows[name] = row
        k = row["kdlab"]
        print(f"{name}: kdlab {'%.3f' % (1 - k['pruned_macs'] / k['macs']) if 'pruned_macs' in k else k.get('status')}"
              + (f", TP {row['tp'].get('status')}" if have_tp else "")
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    return rows


# ---------------------------------------------------------------- 6. speed

def speed(names, tp, rounds: int) -> dict:
    """Median ms per forward pass at batch 8 on one thread: dense, kdlab, Torch-Pruning,
    interleaved round by round in this process."""
    out = {}
    for name in names:
        model, _ = build(name, SPEED_SIDE)
        x = torch.randn(SPEED_BATCH, 3, SPEED_SIDE, SPEED_SIDE, generator=torch.Generator().manual_seed(1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidates = {"dense": model, "kdlab": prune.structured_prune(model, AMOUNT, x[:1])}
        note = ""
        if tp is not None:
            net = tp_prune(tp, copy.deepcopy(model), x[:1])
            try:
                with torch.no_grad():
                    net(x[:1])
            except Exception:  # noqa: BLE001
                vit_patch(net)
                note = "Torch-Pruning's model runs only after setting hidden_dim by hand"
            candidates["Torch-Pruning"] = net
        samples = {k: [] for k in candidates}
        order = list(candidates)
        for r in range(rounds):  # one sample each per round, the order rotating so none always goes first
            for k in order[r % len(order):] + order[:r % len(order)]:
                samples[k] += evaluate.latency_samples(candidates[k], x, warmup=2 if r == 0 else 0, repeats=1,
                                                       threads=1)
        out[name] = {"ms": {k: statistics.median(v) for k, v in samples.items()},
                     "runs": len(next(iter(samples.values()))),
                     "macs": {k: evaluate.macs(m, x) for k, m in candidates.items()},
                     "params": {k: evaluate.count_parameters(m) for k, m in candidates.items()},
                     "note": note}
        print(f"speed {name}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in out[name]["ms"].items()), flush=True)
    return out


def verdict(ok):
    return "met" if ok else "**not met**"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, few points, four models")
    parser.add_argument("--models", help="comma-separated torchvision models for sections 5 and 6 (default: all)")
    parser.add_argument("--steps", action="store_true", help="section 3 alone, rewritten in results/prune.md")
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return sweep_worker(args.worker[0], args.worker[1], Path(args.worker[2]))
    train.seed_everything(0, threads=1)
    os.environ.setdefault("KDLAB_PROGRESS", "0")
    if args.steps:
        text = rewrite_steps(step_overhead(False))
        (RESULTS / "prune.md").write_text(text)
        print(text[text.index("## 3."):text.index("## 4.")])
        return None
    started = time.perf_counter()
    tp = torch_pruning()
    if tp is None:
        print("Torch-Pruning is not installed (pip install -e .[bench]): sections 5 and 6 run kdlab alone",
              file=sys.stderr, flush=True)
    flat, images = data.load_digits(), data.load_digits(flat=False)
    seeds = [0] if args.quick else [0, 1, 2]
    sparsities = [0.0, 0.9] if args.quick else [0.0, 0.5, 0.8, 0.9, 0.95, 0.98]
    ft_epochs = 2 if args.quick else 30
    import torchvision

    names = (args.models.split(",") if args.models else
             list(QUICK_MODELS) if args.quick else torchvision.models.list_models(module=torchvision.models))
    speed_names = [n for n in SPEED_MODELS if n in names] if args.models else \
        list(SPEED_MODELS[:2] if args.quick else SPEED_MODELS)

    dense_acc, acc = accuracy_vs_sparsity(flat, seeds, sparsities, ft_epochs)
    cnn = structured_cnn(images, args.quick)
    steps = step_overhead(args.quick)
    sizes, exact = file_sizes()
    rows = sweep(names, tp is not None)
    fast = speed(speed_names, tp, 3 if args.quick else SPEED_ROUNDS)
    write_report(args, seeds, sparsities, ft_epochs, dense_acc, acc, cnn, steps, sizes, exact, rows, fast,
                 tp, time.perf_counter() - started)


def mean(xs):
    return sum(xs) / len(xs)


def removed(r) -> float | None:
    return 1 - r["pruned_macs"] / r["macs"] if "pruned_macs" in r and r.get("macs") else None


def shape_ok(row) -> bool:
    return bool(row["kdlab"].get("shape_ok"))


def exact_ok(row) -> bool | None:
    """None where the equivalence does not hold (a LayerNorm over pruned channels)."""
    k = row["kdlab"]
    if "rel_error" not in k or k.get("layernorm"):
        return None
    return k["rel_error"] <= EXACT_RTOL


def tp_handles(row) -> bool:
    return row.get("tp", {}).get("status") == "ok" and removed(row["tp"]) is not None


def sweep_section(rows, tp) -> list:
    n = len(rows)
    lines = [f"## 5. Every torchvision classifier at amount={AMOUNT}: kdlab and Torch-Pruning", "",
             f"`torchvision.models.list_models(module=torchvision.models)` gives {n} models; each is built with "
             "`weights=None` (BatchNorm statistics randomised and torchvision's zero-initialised heads filled, so "
             "that zeroed channels are a real test), on 2 images of the side shown, and pruned by "
             f"`prune.select_channels(model, {AMOUNT}, x)` + `prune.remove_channels` (L1 of the producing "
             "filters) and by Torch-Pruning's `MagnitudePruner(importance=MagnitudeImportance(p=1), "
             f"pruning_ratio={AMOUNT}, ignored_layers=[the 1000-class layer])`. `amount` means what "
             "`pruning_ratio` means: every prunable group loses that fraction of its channels (kdlab removes "
             "round(amount * C), Torch-Pruning C - int(C * (1 - ratio)): the same count for even C). Each tool "
             "runs in its own process, whose memory is limited to what it holds after building the model plus "
             f"3 GB or four copies of the weights, whichever is more (at most {WORKER_MEMORY_GB} GB). MACs are "
             "counted for both by "
             "`kdlab.evaluate.macs` (torch.utils.flop_counter). *exact*: the pruned model's output against the "
             "original with every slice of the removed channels set to zero (`prune.zero_channels`), max "
             "absolute difference over the largest output; where a LayerNorm normalises pruned channels its "
             "statistics run over fewer channels, so that equivalence does not hold there (n/a). Time to prune "
             "includes tracing (kdlab: `torch.export`, the selection, the copy and a check that it runs; "
             "Torch-Pruning: building its dependency graph and `step()`).", "",
             "| model | side | prunable groups | kdlab MACs removed | TP MACs removed | kdlab / TP | exact | "
             "kdlab s | TP s | Torch-Pruning |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        k, t = row["kdlab"], row.get("tp", {})
        rk, rt = removed(k), removed(t)
        groups = "{}/{}".format(*k["groups"]) if "groups" in k else "-"
        if exact_ok(row) is None:
            ex = "n/a (LayerNorm)" if k.get("layernorm") else "-"
        else:
            ex = f"{k['rel_error']:.0e}" + ("" if exact_ok(row) else " **differs**")
        status = t.get("status", "not run" if tp is None else "-")
        if t.get("patched"):
            status += " (MACs after setting hidden_dim)"
        ratio = f"{rk / rt:.3f}" if rk is not None and rt else "-"
        lines.append(f"| {name} | {k.get('side', '-')} | {groups} | "
                     f"{'%.3f' % rk if rk is not None else k.get('status', '-')} | "
                     f"{'%.3f' % rt if rt is not None else '-'} | {ratio} | {ex} | "
                     f"{'%.1f' % k['seconds'] if 'seconds' in k else '-'} | "
                     f"{'%.1f' % t['seconds'] if 'seconds' in t else '-'} | {status.replace('|', '/')} |")
    ran = [n_ for n_, r in rows.items() if shape_ok(r)]
    failed = [n_ for n_ in rows if n_ not in ran]
    checked = [n_ for n_, r in rows.items() if exact_ok(r) is not None]
    exact = [n_ for n_ in checked if exact_ok(rows[n_])]
    tp_fail = [n_ for n_, r in rows.items() if r.get("tp", {}).get("status", "ok").startswith(("fails", "process"))]
    tp_break = [n_ for n_, r in rows.items() if r.get("tp", {}).get("status", "").startswith("breaks")]
    handled = [n_ for n_, r in rows.items() if tp_handles(r) and removed(r["kdlab"]) is not None]
    warned = [n_ for n_, r in rows.items() if any("would remove about" in w for w in r["kdlab"].get("warnings", []))]
    lines += ["", f"kdlab ran with the output shape unchanged on {len(ran)} of {n} models"
              + (f" (not on: {', '.join(failed)})" if failed else "") + ". "
              f"The pruned model equals the zeroed original on {len(exact)} of the {len(checked)} models where "
              f"that equivalence holds" + (f" (differs: {', '.join(n_ for n_ in checked if n_ not in exact)})"
                                           if len(exact) < len(checked) else "")
              + f"; {sum(1 for n_ in checked if n_ in handled)} of them are models Torch-Pruning handles too."]
    if tp is not None:
        lines += ["", f"Torch-Pruning fails on {len(tp_fail)} models: "
                  + (", ".join(f"{n_} ({rows[n_]['tp']['status'].removeprefix('fails: ')})" for n_ in tp_fail)
                     or "none") + ".",
                  f"It breaks the model (the pruned model does not run or changes its output shape) on "
                  f"{len(tp_break)}: " + (", ".join(tp_break) or "none") + "."]
        if handled:
            worst = min(handled, key=lambda n_: removed(rows[n_]["kdlab"]) / removed(rows[n_]["tp"]))
            below = [n_ for n_ in handled if removed(rows[n_]["kdlab"]) < GOAL_MACS_VS_TP * removed(rows[n_]["tp"])]
            both = [n_ for n_ in handled if "seconds" in rows[n_]["kdlab"] and "seconds" in rows[n_]["tp"]]
            lines += ["", f"On the {len(handled)} models Torch-Pruning handles, kdlab removes "
                      f"{removed(rows[worst]['kdlab']) / removed(rows[worst]['tp']):.3f}x Torch-Pruning's MACs at "
                      f"worst ({worst})" + (f"; below {GOAL_MACS_VS_TP}x on {', '.join(below)}" if below else "")
                      + ". Median time to prune on those: kdlab "
                      f"{statistics.median(rows[n_]['kdlab']['seconds'] for n_ in both):.1f} s, Torch-Pruning "
                      f"{statistics.median(rows[n_]['tp']['seconds'] for n_ in both):.1f} s."]
    if warned:
        lines += ["", f"kdlab warned that the MACs it removes fall short of what the amount implies on: "
                  f"{', '.join(warned)} (`prune.explain` names the operations that froze their groups)."]
    return lines + [""]


def speed_section(fast, tp) -> list:
    lines = [f"## 6. Latency, batch {SPEED_BATCH} of {SPEED_SIDE}x{SPEED_SIDE} images, 1 thread", "",
             "Dense, kdlab-pruned and Torch-Pruning-pruned models (amount 0.5, the same settings as section 5) "
             "timed in one process, one sample of each per round in turn (the order rotating), median over the "
             "rounds. Where both pruned models have the same layer sizes, any gap between them is timing noise. "
             "*speed-up / MAC ratio*: how much of the MAC reduction shows as speed.", "",
             "| model | dense ms | kdlab ms | kdlab speed-up | kdlab MAC ratio | speed-up / MAC ratio | TP ms | "
             "TP speed-up | TP MAC ratio | speed-up / MAC ratio | runs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for name, r in fast.items():
        ms, macs = r["ms"], r["macs"]
        cells = [name, f"{ms['dense']:.1f}"]
        for tool in ("kdlab", "Torch-Pruning"):
            if tool in ms:
                sp, mr = ms["dense"] / ms[tool], macs["dense"] / macs[tool]
                cells += ([f"{ms[tool]:.1f}"] if tool == "kdlab" else [f"{ms[tool]:.1f}"]) + \
                    [f"{sp:.2f}x", f"{mr:.2f}x", f"{sp / mr:.2f}"]
            else:
                cells += ["-", "-", "-", "-"]
        cells.append(str(r["runs"]))
        lines.append("| " + " | ".join(cells) + " |")
        if r["note"]:
            notes.append(f"{name}: {r['note']}.")
    return lines + ([""] + notes if notes else []) + [""]


def sweep_goals(rows, fast, tp) -> list:
    n = len(rows)
    ran = sum(shape_ok(r) for r in rows.values())
    checked = [r for r in rows.values() if exact_ok(r) is not None]
    worst_err = max((r["kdlab"]["rel_error"] for r in checked), default=0.0)
    goals = [(f"kdlab prunes every torchvision classifier ({n}) at amount={AMOUNT}, output shape unchanged",
              f"{ran}/{n}", "yes" if ran == n else "no"),
             (f"pruned model = original with the removed channels zeroed (relative error <= {EXACT_RTOL}), every "
              "model where that holds (no LayerNorm over pruned channels)",
              f"{sum(exact_ok(r) for r in checked)}/{len(checked)}, worst {worst_err:.0e}",
              "yes" if all(exact_ok(r) for r in checked) else "no")]
    if tp is None:
        return goals + [(f"MACs removed >= {GOAL_MACS_VS_TP}x Torch-Pruning's on every model it handles",
                         "not measured (Torch-Pruning missing)", "not measured")]
    handled = [name for name, r in rows.items() if tp_handles(r) and removed(r["kdlab"]) is not None]
    ratios = {name: removed(rows[name]["kdlab"]) / removed(rows[name]["tp"]) for name in handled}
    worst = min(ratios, key=ratios.get) if ratios else None
    unhandled = [name for name, r in rows.items() if name not in handled]
    goals += [(f"MACs removed >= {GOAL_MACS_VS_TP}x Torch-Pruning's on every model it handles ({len(handled)})",
               f"worst {ratios[worst]:.3f} ({worst})" if worst else "-",
               "yes" if ratios and min(ratios.values()) >= GOAL_MACS_VS_TP else "no"),
              ("models where Torch-Pruning fails or breaks the model (measured)",
               f"{len(unhandled)}: {', '.join(unhandled) or 'none'}", "shown")]
    for name, r in fast.items():
        ms, macs, params = r["ms"], r["macs"], r["params"]
        if "Torch-Pruning" not in ms:
            continue
        sk, st = ms["dense"] / ms["kdlab"], ms["dense"] / ms["Torch-Pruning"]
        same = macs["kdlab"] == macs["Torch-Pruning"] and params["kdlab"] == params["Torch-Pruning"]
        met = "yes" if sk >= st else ("tie (same layer sizes, the gap is timing noise)" if same else "no")
        goals.append((f"{name}: speed-up at batch {SPEED_BATCH}, 1 thread >= Torch-Pruning's",
                      f"kdlab {sk:.2f}x (latency/MAC ratio {sk / (macs['dense'] / macs['kdlab']):.2f}) vs "
                      f"Torch-Pruning {st:.2f}x ({st / (macs['dense'] / macs['Torch-Pruning']):.2f})"
                      + (f"; {r['note']}" if r["note"] else ""), met))
    return goals


def steps_section(steps) -> tuple:
    """Section 3's lines and its two worst ratios ``(lines, fine-tuning, fresh init)``."""
    lines = ["## 3. Training-step time with kept masks (Adam, batch 64, 90% sparsity)", "",
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
    return lines, fine_tuning, fresh


def step_goal_rows(fine_tuning: float, fresh: float) -> list:
    yes = lambda ok: "yes" if ok else "no"  # noqa: E731
    return [f"| training step with kept masks <= {GOAL_STEP_OVERHEAD}x a dense step, fine-tuning a pruned "
            f"trained model | worst {fine_tuning:.3f}x | {yes(fine_tuning <= GOAL_STEP_OVERHEAD)} |",
            f"| same, fresh init on random inputs (shown, not the goal's case) | worst {fresh:.3f}x | "
            f"{yes(fresh <= GOAL_STEP_OVERHEAD)} |"]


def rewrite_steps(steps) -> str:
    """results/prune.md with section 3 and its goal rows replaced by this run's."""
    text = (RESULTS / "prune.md").read_text()
    section, fine_tuning, fresh = steps_section(steps)
    head, rest = text.split("## 3. Training-step time", 1)
    tail = rest[rest.index("## 4. File size"):]
    note = (f"Section 3 measured again on its own (`--steps`, load average at the end {os.getloadavg()[0]:.1f}); "
            "the other sections are from the full run.")
    rows = step_goal_rows(fine_tuning, fresh)
    out = []
    for line in tail.splitlines():
        if line.startswith("| training step with kept masks"):
            out.append(rows[0])
        elif line.startswith("| same, fresh init on random inputs"):
            out.append(rows[1])
        else:
            out.append(line)
    return head + "\n".join(section[:2] + [note, ""] + section[2:] + out) + "\n"


def write_report(args, seeds, sparsities, ft_epochs, dense_acc, acc, cnn, steps, sizes, exact, rows, fast, tp,
                 seconds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = "_quick" if args.quick else ""
    lines = [f"# kdlab.prune benchmark{' (--quick smoke run)' if args.quick else ''}", "",
             f"Machine: `{platform.processor() or platform.machine()}`, {os.cpu_count()} CPUs, "
             f"torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, "
             f"Torch-Pruning {getattr(tp, '__version__', 'NOT INSTALLED')}, 1 thread; other processes shared "
             f"the CPUs, so timings interleave the compared models in the same run (sections 2-3 report the "
             f"fastest sample, since load only adds time; section 6 the median, as its goal asks). "
             f"Total run time {seconds:.0f} s.", ""]
    if tp is None:
        lines += ["**Torch-Pruning is not installed** (`pip install -e .[bench]`): sections 5 and 6 show kdlab "
                  "alone and their comparison goals are not measured.", ""]

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
    above = [f"{side}x{side} {name}" for (side, name), sp in speedups.items()
             if name.startswith("structured") and sp > cnn[f"flops{side}"][0] / cnn[f"flops{side}"][1]]
    lines += ["", "Speed-ups are against the dense model with the same pooling; the fast max-pool rows use "
              "two elementwise maxima over strided views, which give exactly the values of `nn.MaxPool2d(2)` "
              "(checked), in place of PyTorch's default max-pool kernel.", "",
              f"FLOP ratio (the ceiling): {cnn['flops8'][0] / cnn['flops8'][1]:.2f}x. Lower latency "
              f"(shown, no goal: issue #4's 2.5x target for this network is retired, for the reasons below; "
              f"speed is judged on real architectures in section 6): {sp8:.2f}x on the 8x8 digits "
              f"(latency/FLOP ratio {sp8 / (cnn['flops8'][0] / cnn['flops8'][1]):.2f}), {sp32:.2f}x on 32x32 "
              f"inputs; with the fast max-pool {fast8:.2f}x and {fast32:.2f}x. "
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
    lines += ["So on this CPU the latency of this network on 8x8 inputs is set by fixed per-call costs and the "
              "max-pool kernel, not by its FLOPs; a larger speed-up needs inputs large enough for the "
              "convolutions to dominate and a pooling kernel that is not the bottleneck.", ""]

    # 3. step overhead
    section, fine_tuning, fresh = steps_section(steps)
    lines += section

    # 4. file size
    dense_bytes = sizes["dense torch.save"]
    lines += ["## 4. File size of LeNet-300-100 at 90% sparsity (global magnitude)", "",
              "| file | bytes | vs dense |", "|---|---|---|"]
    for name, b in sizes.items():
        lines.append(f"| {name} | {b:,} | {dense_bytes / b:.2f}x smaller |")
    ratio = dense_bytes / sizes["kdlab save_sparse"]
    lines += ["", f"Goal: save_sparse >= {GOAL_SIZE_RATIO}x smaller than dense: {ratio:.2f}x, "
              f"{verdict(ratio >= GOAL_SIZE_RATIO)}; round trip exact: {exact}.", ""]

    # 5. torchvision sweep
    lines += sweep_section(rows, tp)
    # 6. speed
    lines += speed_section(fast, tp)
    goals = sweep_goals(rows, fast, tp)
    yes = lambda ok: "yes" if ok else "no"  # noqa: E731
    lines += ["## Goals", "", "| goal | measured | met |", "|---|---|---|",
              f"| LeNet-300-100 at 90% sparsity loses <= {GOAL_MLP_LOSS_PT} pt after fine-tuning | "
              f"{loss:+.2f} pt lost | {yes(loss <= GOAL_MLP_LOSS_PT)} |",
              f"| course CNN, 50% channels, batch 64, 8x8 digits: lower latency (shown, no goal) | {sp8:.2f}x "
              f"(latency/FLOP ratio {sp8 / (cnn['flops8'][0] / cnn['flops8'][1]):.2f}) | shown (no goal) |",
              f"| course CNN, 50% channels: accuracy within {GOAL_CNN_LOSS_PT} pt after fine-tuning | "
              f"{cnn_loss:+.2f} pt lost | {yes(cnn_loss <= GOAL_CNN_LOSS_PT)} |",
              *step_goal_rows(fine_tuning, fresh),
              f"| save_sparse >= {GOAL_SIZE_RATIO}x smaller than dense at 90% sparsity, exact round trip | "
              f"{ratio:.2f}x, exact: {exact} | {yes(ratio >= GOAL_SIZE_RATIO and exact)} |"]
    lines += [f"| {goal} | {measured} | {met} |" for goal, measured, met in goals] + [""]
    name = f"prune{suffix}.md"
    (RESULTS / name).write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"\nwritten {RESULTS / name}")


if __name__ == "__main__":
    main()
