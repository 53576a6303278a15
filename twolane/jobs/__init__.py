"""Batch-lane jobs: the job store (records, inputs, outputs in S3), the invokers (SageMaker
async or the local runner) and how success/error notifications complete a job."""
