"""DANN (Ganin et al.): the model with its gradient-reversal layer and the prediction command
(`python -m pipelines.dann`)."""

from pipelines.dann.modeling_dann import DANNConfig, DANNModel, GradientReversal, dann_lambda

__all__ = ["DANNConfig", "DANNModel", "GradientReversal", "dann_lambda"]
