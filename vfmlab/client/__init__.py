"""Client of the model server (``vfmlab serve``): standard library and numpy only, as in Slicer's Python.

``ModelClient`` makes the requests; ``LocalServer`` starts a server on this machine with a fresh token;
``wire`` says how volumes and masks travel.
"""
from .http import ModelClient, ServerError, ServerUnavailable, SliceMask, VolumeMask
from .local import TOKEN_ENV, LocalServer, ServerConnection

__all__ = ["TOKEN_ENV", "LocalServer", "ModelClient", "ServerConnection", "ServerError", "ServerUnavailable", "SliceMask", "VolumeMask"]
