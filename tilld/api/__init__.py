"""tilld's APIs: thin adapters over one table of operations (operations.py)."""
