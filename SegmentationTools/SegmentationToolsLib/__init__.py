"""Slicer-side helpers of the Segmentation Tools module (plain Python: no ``qt``/``ctk`` at import time)."""
