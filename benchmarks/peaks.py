"""Kernel peaks of this machine: what one atari update could at best reach here.

Times (best of a few) large matmuls and the atari encoder/decoder convolutions (batch 500,
channels-last, forward and forward + backward) in fp32 and bf16, and prints the lower
bound on one update that the FLOP count implies: ``FLOPs / matmul peak``. Optionally
appends the result as JSON: ``python benchmarks/peaks.py [--json FILE]``.

The same matmuls in TensorFlow (the official code's engine) are timed by
``benchmarks/tf_peaks.py`` in a separate environment with ``tensorflow-cpu``.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime

import torch
import torch.nn.functional as F

from reverie.bench import append_run, machine_info, matmul_peak, time_ms

# (kind, in, out, kernel, input side) of the atari (depth 48) encoder and decoder.
LAYERS = [("conv", 1, 48, 4, 64), ("conv", 48, 96, 4, 31), ("conv", 96, 192, 4, 14), ("conv", 192, 384, 4, 6),
          ("deconv", 192, 96, 5, 5), ("deconv", 96, 48, 6, 13), ("deconv", 48, 1, 6, 30)]


CPU = torch.device("cpu")


def best_seconds(fn, repeats: int = 3) -> float:
    return min(time_ms(fn, repeats, CPU)) / 1e3


def layer_gflops(dtype: torch.dtype, kind: str, c_in: int, c_out: int, k: int, side: int, n: int = 500) -> dict:
    cl = torch.channels_last
    x = torch.randn(n, c_in, side, side, dtype=dtype).contiguous(memory_format=cl).requires_grad_(c_in > 1)
    if kind == "conv":
        w = torch.randn(c_out, c_in, k, k, dtype=dtype).contiguous(memory_format=cl).requires_grad_()
        out = (side - k) // 2 + 1
        flops = 2 * n * out * out * c_out * c_in * k * k
        fn = lambda: F.conv2d(x, w, stride=2)  # noqa: E731
    else:
        w = torch.randn(c_in, c_out, k, k, dtype=dtype).contiguous(memory_format=cl).requires_grad_()
        flops = 2 * n * side * side * c_out * c_in * k * k
        fn = lambda: F.conv_transpose2d(x, w, stride=2)  # noqa: E731
    grad = torch.randn_like(fn())
    inputs = [x, w] if c_in > 1 else [w]  # the image needs no gradient
    forward = best_seconds(fn)
    both = best_seconds(lambda: torch.autograd.grad(fn(), inputs, grad))
    passes = 1 + len(inputs)
    return {"layer": f"{kind} {c_in}->{c_out} k{k} @{side}", "forward_gflops": flops / forward / 1e9,
            "forward_backward_gflops": passes * flops / both / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="append the result to this JSON file's 'runs'")
    parser.add_argument("--update-tflop", type=float, default=2.30, help="FLOPs of one update (reverie bench)")
    args = parser.parse_args()
    result = {"date": datetime.now().isoformat(timespec="seconds"), "machine": machine_info(CPU),
              "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = max(matmul_peak(CPU, name, size) for size in (2048, 4096)) / 1e9
        layers = [layer_gflops(dtype, *layer) for layer in LAYERS]
        result[name] = {"matmul_gflops": peak, "layers": layers,
                        "update_lower_bound_s": args.update_tflop * 1e3 / peak}
        print(f"{name}: matmul {peak:.0f} GFLOP/s -> an update of {args.update_tflop} TFLOP takes "
              f">= {args.update_tflop * 1e3 / peak:.1f} s")
        for row in layers:
            print(f"  {row['layer']:<24} forward {row['forward_gflops']:5.0f}  "
                  f"forward+backward {row['forward_backward_gflops']:5.0f} GFLOP/s")
    if args.json:
        append_run(args.json, result)


if __name__ == "__main__":
    main()
