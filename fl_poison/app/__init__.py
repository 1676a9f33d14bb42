"""The Flower ServerApp and ClientApp that pyproject.toml points at."""
