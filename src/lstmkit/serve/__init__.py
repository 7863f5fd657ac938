"""``lstmkit serve``: trained runs over HTTP (FastAPI on uvicorn, the ``lstmkit[serve]``
extra), with dynamic micro-batching (:mod:`.batching`), the gate traces as JSON
(:mod:`.traces`) and a web inspector (``static/``, served at ``/``).

Nothing here is imported by ``import lstmkit``; :func:`lstmkit.serve.server.serve` imports
FastAPI and uvicorn when it starts.
"""

from lstmkit.serve.config import ServeConfig

__all__ = ["ServeConfig"]
