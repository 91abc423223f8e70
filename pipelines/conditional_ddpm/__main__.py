from pipelines.conditional_ddpm.course_output import cli

cli()
