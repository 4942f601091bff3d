"""The embedded stack's parts: the bundled broker and child processes."""
