"""Command-line entry points: ``tilld`` (the daemon) and ``tillctl`` (its technician client)."""
