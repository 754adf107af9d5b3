"""The model server (``vfmlab serve``): FastAPI + uvicorn, holding models, volumes and embedding caches.

Panels and scripts talk to it through :mod:`vfmlab.client`; see ``app`` for the routes.
"""
