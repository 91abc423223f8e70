from training.report.reproduce import cli

cli()
