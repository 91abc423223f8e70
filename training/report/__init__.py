"""The course report rebuilt by one command (`python -m training.report`): stages, the Markdown writer and
the DANN experiments (table and t-SNE)."""
