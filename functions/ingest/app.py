"""Ingest function: S3 ObjectCreated/ObjectRemoved events via SQS → vector store files."""

from llamda.lambda_ingest import sqs_handler

lambda_handler = sqs_handler()
