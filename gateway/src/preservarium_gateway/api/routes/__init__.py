"""The API's routes, one module per resource; each a thin layer over a use case."""
