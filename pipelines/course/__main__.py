from pipelines.course.commands import cli

cli()
