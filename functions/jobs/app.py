"""Jobs function: asynchronous jobs (background responses) from JobsQueue, one per invocation.
A background response may run file_search (LanceDB), so this function is in the container
image. A job out of invocation time checkpoints and queues its continuation (docs/agents.md)."""

from llamda.lambda_jobs import sqs_handler

lambda_handler = sqs_handler()
