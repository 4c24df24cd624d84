"""HTTP layer: thin FastAPI routers over the engine, one module per resource."""
