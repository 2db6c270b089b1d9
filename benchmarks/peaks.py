"""Kernel peaks of this machine: what one atari update could at best reach here.

Times (best of a few) large matmuls and the atari encoder/decoder convolutions (batch 500,
channels-last, forward and forward + backward) in fp32 and bf16, and prints the lower
bound on one update that the FLOP count implies: ``FLOPs / matmul peak``. Also times the
matrix products alone of one batch-1 policy call at the atari preset (the encoder's convs
as patch products, the RSSM's posterior step, the actor), one thread as acting runs:
a lower bound on the policy call, set by streaming its ~29 MB of fp32 weights from
memory. Optionally appends the result as JSON: ``python -m benchmarks.peaks [--json FILE]``.

The same matmuls in TensorFlow (the official code's engine) are timed by
``python -m benchmarks.tf_peaks`` in a separate environment with ``tensorflow-cpu``.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime

import torch
import torch.nn.functional as F

from reverie.tools.timing import append_run, machine_info, matmul_peak, time_ms

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


def policy_matmul_shapes() -> list[tuple[int, int, int]]:
    """``(rows, in, out)`` of every matrix product in one batch-1 policy call at the atari
    preset, in call order, read from the built networks (decoder and heads are not used)."""
    from reverie.agent import Agent
    from reverie.config import load_config
    from reverie.nn.layers import conv_out_sizes
    from reverie.tools.params import task_spaces

    config = load_config("atari")
    agent = Agent(config, *task_spaces(config))
    wm, shapes = agent.world_model, []
    convs = [m for m in wm.encoder.cnn.net if isinstance(m, torch.nn.Conv2d)]
    sides = conv_out_sizes(wm.shapes["image"][0], [c.kernel_size[0] for c in convs])[1:]
    for conv, side in zip(convs, sides, strict=True):
        shapes.append((side * side, conv.in_channels * conv.kernel_size[0] ** 2, conv.out_channels))
    rssm = wm.rssm
    for layer in (rssm.recurrent_in[0], rssm.gru.linear, rssm.posterior_head[0], rssm.posterior_head[2],
                  *[m for m in agent.behavior.actor.mlp.modules() if isinstance(m, torch.nn.Linear)]):
        shapes.append((1, layer.in_features, layer.out_features))
    return shapes


def policy_matmul_floor(repeats: int = 200) -> dict:
    """Median ms of the policy's matrix products alone, with random operands of the same
    shapes, one thread; consecutive calls cycle through all the weights as acting does."""
    shapes = policy_matmul_shapes()
    weights = [torch.randn(n_out, n_in) for _, n_in, n_out in shapes]
    inputs = [torch.randn(rows, n_in) for rows, n_in, _ in shapes]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ms = sorted(time_ms(lambda: [F.linear(x, w) for x, w in zip(inputs, weights)], repeats, CPU, warmup=10))
    finally:
        torch.set_num_threads(threads)
    return {"shapes": shapes, "weight_mb": sum(w.numel() for w in weights) * 4 / 2**20,
            "median_ms": ms[len(ms) // 2], "min_ms": ms[0]}


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
    result["policy_fp32"] = policy_matmul_floor()
    floor = result["policy_fp32"]
    print(f"policy (atari, batch 1, fp32, 1 thread): its matrix products alone take {floor['median_ms']:.2f} ms "
          f"(min {floor['min_ms']:.2f}) for {floor['weight_mb']:.1f} MB of weights")
    if args.json:
        append_run(args.json, result)


if __name__ == "__main__":
    main()
