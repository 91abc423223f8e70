from pipelines.ddim_from_noise.cli import cli

cli()
