"""The gin files; installed as the package `trainer.configs` (see setup.py)."""
