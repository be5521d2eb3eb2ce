"""tilld: a headless till daemon that keeps selling when the network fails."""

__version__ = "0.1.0"
