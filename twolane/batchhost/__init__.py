"""The batch host: what runs the batch model on one invocation, on either host (the SageMaker
container, `sagemaker/serve.py`, or the Lambda batch worker): `inference` (parse, predict,
serialise), `worker` (one shard as the async endpoint would do it: `WorkerEvent`, `BatchWorker`)
and `notification` (the message SageMaker publishes when an invocation ends)."""
