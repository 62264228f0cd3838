"""The job server (``python main.py serve``): an HTTP + WebSocket API over a durable SQLite queue,
with one warm Engine running the jobs in order. See :mod:`nodegen.server.app` for the endpoints."""
