"""The script engine: compile restricted parser source, run it under guards, check outputs.

It knows nothing of processes or gRPC; the worker runs it, the pool runs workers.
"""
