"""`python -m twolane_cli ...`: the `twolane` command without the console script."""

from twolane_cli.app import app

app()
