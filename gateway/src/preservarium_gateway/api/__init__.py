"""The operator HTTP API of the gateway (FastAPI on uvicorn, on the gateway's loop)."""

from preservarium_gateway.api.app import create_app
from preservarium_gateway.api.context import ApiContext, ApiLimits

__all__ = ["ApiContext", "ApiLimits", "create_app"]
