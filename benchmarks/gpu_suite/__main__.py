from benchmarks.gpu_suite.suite import cli

cli()
