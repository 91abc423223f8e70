"""Benchmarks that print tables, run from the repository root as modules (`python -m benchmarks.bench_cfg ...`),
and the GPU suite (`python -m benchmarks.gpu_suite`). README.md lists them with their results."""
