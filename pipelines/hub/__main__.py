from pipelines.hub.publish import cli

cli()
