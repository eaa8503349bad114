"""Benchmark of kdlab.quantize on one CPU thread: size, accuracy and latency of each
quantization of lesson 15's model, and where weight-only int4 could pay.

1. The digits MLP 64-512-512-10 (``models.pretrained("mlp-teacher")``) as float32, dynamic
   int8, static int8 per-tensor and per-channel (calibrated on the validation part) and int4
   weights in groups of 32 (``quantize.quantize_int4``, dequantized on every call, or with
   ``kernel=True`` through torch's int4 kernel where the layer allows it): test
   accuracy, bytes of ``torch.save(state_dict)``, and latency at batches 1, 16, 64 and 256
   (interleaved rounds, the least disturbed sample of each).
2. One Linear layer's matmul at batch 1 and 64, float32 against torch's CPU int4 kernel
   (``torch.ops.aten._weight_int4pack_mm_for_cpu``, groups of 32, bf16 and float32 inputs)
   and against kdlab's dequantize-then-matmul: a layer the size of lesson 15's hidden
   layer (512 x 512) and one of a language model (4096 x 4096), where reading the weights
   dominates at batch 1.

Usage: python benchmarks/bench_quantize.py [--quick]
Writes benchmarks/results/quantize.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils import benchmark as tbench

from kdlab import data, evaluate, models, quantize, train

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 16, 64, 256)
GROUP = 32


def section_models(rounds: int) -> list:
    train.seed_everything(0)
    split = data.load_dataset("digits", flat=True).with_validation(0.2)
    dense = models.pretrained("mlp-teacher", dataset="digits", data=split)
    variants = {
        "float32": dense,
        "dynamic int8": quantize.quantize_int8(dense),
        "static int8, per-tensor": quantize.static_int8(dense, split.x_val, per_channel=False),
        "static int8, per-channel": quantize.static_int8(dense, split.x_val),
        f"int4 weights, groups of {GROUP}": quantize.quantize_int4(dense, group_size=GROUP),
        "int4 weights, torch's int4 kernel": quantize.quantize_int4(dense, group_size=GROUP, kernel=True),
    }
    x = split.x_test
    while len(x) < max(BATCHES):
        x = torch.cat([x, split.x_test])
    fastest = {}
    for b in BATCHES:
        samples = evaluate.latency_interleaved(variants, x[:b], rounds=rounds, repeats=3)
        fastest[b] = {n: min(s) for n, s in samples.items()}
    lines = ["## 1. Lesson 15's model (64-512-512-10 MLP on the digits)", "",
             "Static models calibrated on the 180 validation images; accuracy on the 899 test images; "
             "size = bytes of `torch.save(model.state_dict())`; latency = the least disturbed of "
             f"{rounds} interleaved rounds x 3 samples, one thread, ms per call (ratio to float32).", "",
             "| model | test accuracy | KB | " + " | ".join(f"batch {b}" for b in BATCHES) + " |",
             "|---|---|---|" + "---|" * len(BATCHES)]
    for name, m in variants.items():
        cells = [f"{fastest[b][name]:.4f} ({fastest[b][name] / fastest[b]['float32']:.2f}x)" for b in BATCHES]
        lines.append(f"| {name} | {evaluate.accuracy(m, split.test):.4f} | "
                     f"{evaluate.model_size_bytes(m) / 1024:.1f} | " + " | ".join(cells) + " |")
    return lines


def _time(stmt: str, env: dict) -> float:
    timer = tbench.Timer(stmt=stmt, globals=env, num_threads=1)
    timer.timeit(3)
    return min(timer.timeit(max(1, int(2e-3 / max(timer.timeit(1).mean, 1e-9)))).mean for _ in range(7)) * 1e3


def int4_kernel_inputs(w: torch.Tensor):
    """torch's CPU int4 layout: codes 0..15 (asymmetric, groups of GROUP) packed by
    ``_convert_weight_to_int4pack_for_cpu``, and ``[groups, out, 2]`` scales and offsets with
    ``w = (q - 8) * s + offset``, offset = min + 8 s."""
    out, width = w.shape
    g = w.reshape(out, width // GROUP, GROUP)
    scale, zero = quantize.affine_qparams(g.amin(-1), g.amax(-1), qmin=0, qmax=15)
    q = (torch.round(g / scale[..., None]) + zero[..., None]).clamp(0, 15).to(torch.int32).reshape(out, width)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
    offset = (8 - zero.float()) * scale
    return packed, torch.stack([scale.t(), offset.t()], -1).contiguous()


def section_kernels(shapes) -> list:
    lines = ["## 2. One layer: float32 matmul, torch's CPU int4 kernel, dequantize-then-matmul", "",
             f"`y = x @ W.T` for W of shape (out, in), int4 groups of {GROUP}; ms per call, the least of 7 "
             "samples, one thread; in brackets the ratio to float32. Max |difference| to the float "
             "matmul of the dequantized weight shows the kernel computes the same product.", "",
             "| W | batch | float32 | int4 kernel, bf16 x | int4 kernel, float32 x | kdlab Int4Linear "
             "(dequantize, float matmul) | max abs diff (bf16 kernel, float32 kernel) |",
             "|---|---|---|---|---|---|---|"]
    for out, width in shapes:
        torch.manual_seed(0)
        linear = torch.nn.Linear(width, out, bias=False)
        w = linear.weight.detach()
        packed, sz = int4_kernel_inputs(w)
        layer = quantize.Int4Linear.from_linear(linear, group_size=GROUP)
        w_hat = layer.dequantized_weight()
        for b in (1, 64):
            x = torch.randn(b, width)
            env = {"torch": torch, "x": x, "xb": x.bfloat16(), "w": w, "p": packed, "sz": sz,
                   "szb": sz.bfloat16(), "g": GROUP, "layer": layer}
            ref = x @ w_hat.T
            diff_b = (torch.ops.aten._weight_int4pack_mm_for_cpu(x.bfloat16(), packed, GROUP, sz.bfloat16()).float()
                      - ref).abs().max().item()
            diff_f = (torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, GROUP, sz) - ref).abs().max().item()
            t_float = _time("x @ w.T", env)
            t_b = _time("torch.ops.aten._weight_int4pack_mm_for_cpu(xb, p, g, szb)", env)
            t_f = _time("torch.ops.aten._weight_int4pack_mm_for_cpu(x, p, g, sz)", env)
            with torch.no_grad():
                t_k = _time("layer(x)", env)
            lines.append(f"| {out} x {width} | {b} | {t_float:.4f} | {t_b:.4f} ({t_b / t_float:.2f}x) | "
                         f"{t_f:.4f} ({t_f / t_float:.2f}x) | {t_k:.4f} ({t_k / t_float:.2f}x) | "
                         f"{diff_b:.2e}, {diff_f:.2e} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, the small layer only")
    args = parser.parse_args()
    start = time.perf_counter()
    torch.set_num_threads(1)
    lines = ["# Quantization: size, accuracy, latency", "",
             f"torch {torch.__version__}, quantized engine `{torch.backends.quantized.engine}`, "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, one thread; "
             f"load average at start {os.getloadavg()[0]:.1f}.", ""]
    lines += section_models(rounds=3 if args.quick else 8) + [""]
    shapes = ((512, 512),) if args.quick else ((512, 512), (4096, 4096))
    lines += section_kernels(shapes) + [""]
    lines += [f"Run time {time.perf_counter() - start:.0f} s; load average at the end {os.getloadavg()[0]:.1f}.", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantize.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
