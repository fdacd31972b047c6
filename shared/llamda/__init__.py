"""Llamda: the Llama Stack APIs served serverlessly on AWS."""

__version__ = "0.1.0"
