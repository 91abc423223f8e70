from pipelines.digit_classifier.score import cli

cli()
