"""The tuner: Optuna study per (template, shape bucket, dtype, flags), trials in a worker subprocess.

study.py   drives the study (sampler, storage, resume, re-timing the finalists, ties)
worker.py  the subprocess that compiles, verifies and times one config at a time
verify.py  NaN-poisoned outputs compared with the float64 reference
timing.py  do_bench medians (L2 flushed), CUDA graphs for tiny kernels, a CPU clock for tests
"""
