from pipelines.dann.predict import cli

cli()
