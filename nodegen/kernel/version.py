"""The version of nodegen (one place; the package and the workflow files it writes read it)."""

__version__ = "0.1.0"
