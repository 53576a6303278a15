"""Lambda: completes batch-lane jobs from SageMaker async SNS notifications."""
