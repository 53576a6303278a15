"""Lambda: runs the batch-lane transformer on one shard of a job (batch.host "lambda")."""
