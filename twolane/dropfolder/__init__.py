"""The S3 drop folder: a file in `inbox/` -> results in `outbox/`, input deleted; a bad file ->
`failed/` with an error report beside it. Formats: CSV, JSON list, JSONL."""
