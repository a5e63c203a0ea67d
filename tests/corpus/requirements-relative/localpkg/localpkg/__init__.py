"""A package of the repository."""

__version__ = "0.3.1"
