"""Preservarium SDK: what the gateway, the sandbox and the CLI share."""

__version__ = "0.1.0"
