"""Maintenance function (scheduled): vector index builds and optimize, outside requests."""

from llamda.lambda_ingest import maintenance_handler

lambda_handler = maintenance_handler()
