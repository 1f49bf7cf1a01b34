"""This machine's matrix-product peak in fp32 and bf16: the yardstick for the fraction of the hardware a training run
uses (docs/performance.md).

    python benchmarks/matmul_peak.py --rounds 5

Shapes: a transformer layer's feed-forward product at training size, (2048 x 384) @ (384 x 1536) (MiniLM: 64
sentences of 32 tokens, hidden 384, intermediate 1536), and a 2048-cube; 2 threads; each timing the median of
`--rounds` rounds of 50 products after 5 warm-up products, in one process (the figures are a ceiling, not a
comparison). Results: benchmarks/results/matmul_peak.json (appended, with the CPU model and its flags) and
matmul_peak.md, one table per CPU model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from common import RESULTS, by_cpu, machine

SHAPES = {"ffn 2048x384 @ 384x1536": (2048, 384, 1536), "cube 2048": (2048, 2048, 2048)}


def gflops(dtype, m: int, k: int, n: int, rounds: int) -> list[float]:
    import torch

    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(5):
        a @ b
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(50):
            a @ b
        out.append(2 * m * k * n * 50 / (time.perf_counter() - start) / 1e9)
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = RESULTS / "matmul_peak.json"
    saved = json.loads(path.read_text()) if path.exists() else {"machine": machine(args.threads), "runs": []}
    if not args.summary_only:
        here = machine(args.threads)
        for name, (m, k, n) in SHAPES.items():
            for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                values = gflops(dtype, m, k, n, args.rounds)
                saved["runs"].append({"system": label, "shape": name, "seed": 0, "cpu": here["cpu"],
                                      "cpu_flags": here["cpu_flags"], "date": time.strftime("%Y-%m-%d %H:%M"),
                                      "gflops": [round(v, 1) for v in values]})
        path.write_text(json.dumps(saved, indent=2) + "\n")
    lines = ["# Matrix-product peak: fp32 and bf16", "", "`python benchmarks/matmul_peak.py --rounds 5` (settings: the "
             "script's docstring). GFLOP/s, median (min-max) of the rounds of the latest measurement per CPU model."]
    for cpu, runs in by_cpu(saved).items():
        flags = ", ".join(runs[-1].get("cpu_flags") or [])
        lines += ["", f"## {cpu}; flags {flags} ({runs[-1]['date']})", "", "| shape | fp32 GFLOP/s | bf16 GFLOP/s | bf16 / fp32 |",
                  "| --- | --- | --- | --- |"]
        for shape in SHAPES:
            latest = {r["system"]: r["gflops"] for r in runs if r["shape"] == shape}
            if len(latest) < 2:
                continue
            f32, b16 = statistics.median(latest["fp32"]), statistics.median(latest["bf16"])
            lines.append(f"| {shape} | {f32:.0f} ({min(latest['fp32']):.0f}-{max(latest['fp32']):.0f}) | "
                         f"{b16:.0f} ({min(latest['bf16']):.0f}-{max(latest['bf16']):.0f}) | {b16 / f32:.2f}x |")
    (RESULTS / "matmul_peak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
