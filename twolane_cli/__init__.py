"""The `twolane` command: the top of the house. It may import the local stack (the emulator),
the build, the recommender and infra; nothing imports it (import-linter contracts in
pyproject.toml)."""
