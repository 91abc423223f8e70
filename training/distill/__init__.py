"""Distil the shipped guided teacher into a few-step student (training/train_distill.py)."""
