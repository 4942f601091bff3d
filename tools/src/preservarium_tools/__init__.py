"""Preservarium tools: the `preservarium` command and what only it uses (the embedded stack,
the simulator, a raw CoAP codec). The services never import this package."""
