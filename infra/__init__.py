"""twolane infrastructure: an AWS CDK (Python) app. Synthesise with `python -m infra.app`."""

import os

# jsii (the bridge to the CDK's JavaScript) prints a large banner on Node 20; the synth works.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
