"""dbfleet: back up, recover and prove a polyglot database estate."""

__version__ = "0.1.0"
__all__ = ["__version__"]
