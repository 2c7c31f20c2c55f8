"""The whole-stack proof harness: ``python -m peepers_proof`` (see __main__.py)."""
