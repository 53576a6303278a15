"""The LLM lane: grounded theme summaries of many comments.

    POST /v1/summaries -> plan.plan_summaries (instant-lane classifier: themes, counts, negative
    counts; redact.redact; sample.representative; prompt.chat_request, one per theme)
    -> one async inference per theme on the LLM endpoint (an OpenAI chat-completions engine:
    llama.cpp locally and on CPU instances, vLLM / LMI on GPU instances)
    -> assemble.assemble (summary text redacted again; quotes kept only when grounding.ground
    finds them verbatim in one sampled comment of that theme).

The classifier decides every fact; the LLM writes only the `summary` prose and proposes quotes.
"""
