"""Lambda: the batch lane's worker, one shard of a batch job per asynchronous invoke."""
