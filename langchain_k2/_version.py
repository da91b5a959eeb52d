"""Version of langchain-k2."""

__version__ = "0.1.0"
