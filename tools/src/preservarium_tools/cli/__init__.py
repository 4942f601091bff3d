"""The `preservarium` command."""
