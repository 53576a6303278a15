"""The LLM lane: theme summaries a report can print.

    POST /v1/summaries -> plan.plan_summaries: the instant-lane classifier (themes, counts,
    negative counts); per theme a bounded sample (points.sample_of), redacted (redact.redact),
    embedded (embed: the packaged MiniLM as ONNX), clustered into points (points.find_points:
    c-TF-IDF labels, the most central comment as the quote); one chat request per theme
    (prompt.summary_request: the points and counts only, a JSON schema bounding the answer)
    -> one async inference per theme on the LLM endpoint (llama.cpp locally and on CPU
    instances, vLLM / LMI on GPU instances); a failed one withholds that theme's summary only
    -> plan.assemble: each summary printed only when it passes checks.withheld_because.

The classifier and the clustering decide every fact and every quote; the LLM writes only the
`summary` prose, and only what passes the checks is printed.
"""
