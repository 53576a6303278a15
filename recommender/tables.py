"""HTML tables of the recommender's report (recommender/report.py and its batch-workload
section, recommender/workload.py)."""

from __future__ import annotations


def html_table(rows: list[list[str]], head: list[str]) -> str:
    """A <table> of `rows` (cells are HTML: the callers escape what is not their own) under `head`."""
    th = "".join(f"<th>{h}</th>" for h in head)  # headers are our own HTML
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
