"""Evaluation: datasets, scoring functions and scoring (benchmarks and eval jobs build on them)."""
