"""Recommender: load-test each lane locally (or on AWS), project cost per million comments
onto AWS hardware, choose Lambda memory and SageMaker instance type, report, update infra config.

Modules: loadgen (locust, own process), servers (start/stop lanes pinned to cores), loadtest
(the sweep), cost (projection and choice), aws (Inference Recommender and Lambda memory sweep),
report (JSON, PNG, HTML), run (`twolane recommend`).
"""
