"""Sharing the shipped models on the Hugging Face Hub: the code each folder carries for `trust_remote_code`
(`remote_code`), model cards and usage snippets (`cards`), and the publishing command (`python -m pipelines.hub`).
"""
