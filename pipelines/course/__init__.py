"""The course's three graded scripts as commands: `python -m pipelines.course hw2_1 | hw2_2 | hw2_3 ...`."""
