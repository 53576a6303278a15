"""`BatchTopics`: the batch lane's two completion topics, whichever host runs the model.

One message per invocation (a job, or one shard of it) goes to one of them: SageMaker publishes
them for the async endpoint (its AsyncInferenceConfig names both), the batch worker Lambda for
host "lambda" (success and error messages itself, and Lambda's on-failure destination record
when an invocation fails outright or waits too long). The job-notification Lambda
(functions/notifications) subscribes to both, whichever host made them.

Each host's construct makes its pair with `BatchTopics.create(self, ...)`, in its own scope: the
async endpoint's topics keep the logical ids they always had (an upgrade replaces nothing), and
switching hosts replaces the topics with the host, subscriptions included.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.common import Shared


@dataclass(frozen=True)
class BatchTopics:
    success_topic: sns.Topic
    error_topic: sns.Topic

    @classmethod
    def create(cls, scope: Construct, shared: Shared, name: str) -> BatchTopics:
        """Both topics as children "Success" and "Error" of `scope`, encrypted with the stack's
        key, TLS only; `name` goes into their display names."""
        return cls(
            success_topic=sns.Topic(scope, "Success", master_key=shared.key, enforce_ssl=True,
                                    display_name=f"{name} succeeded"),
            error_topic=sns.Topic(scope, "Error", master_key=shared.key, enforce_ssl=True,
                                  display_name=f"{name} failed"))

    @property
    def topics(self) -> list[sns.ITopic]:
        return [self.success_topic, self.error_topic]
