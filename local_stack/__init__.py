"""The local stack: API, moto S3, drop-folder watcher and the batch lane, offline."""
