"""The MNIST-M digit classifier that scores generated digits, and its scoring command
(`python -m pipelines.digit_classifier --images DIR`)."""

from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier

__all__ = ["DigitClassifier"]
