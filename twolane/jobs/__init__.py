"""Batch-lane jobs: the job store (records, inputs, outputs in S3), the invokers (the batch
host: SageMaker async or the Lambda batch worker; locally their stand-ins) and how success/error
notifications complete a job."""
