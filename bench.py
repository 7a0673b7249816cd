"""kernelgen vs the libraries a user would otherwise pick, side by side on this GPU, in one table.

    python3 bench.py [--quick] [--op linear_scan] [--json results.json]

Medians of triton.testing.do_bench (L2 flushed), GB/s and TFLOP/s against the GPU's measured
ceilings from profiles/, the memory floor, kernelgen's speedup over each peer, and the issue targets.
Each op's cases live in kernelgen/bench/<family>.py.
"""
import argparse
import sys

from rich.console import Console

from kernelgen.bench.runner import add_bench_arguments, run_bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(), Console(width=200))


if __name__ == "__main__":
    sys.exit(main())
