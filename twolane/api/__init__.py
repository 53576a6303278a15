"""The instant lane's HTTP API (FastAPI): one router per resource, served by uvicorn or Mangum."""
