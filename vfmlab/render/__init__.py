"""Rendering volumes with Slicer's volume rendering and capturing views with their camera records.

``vfmlab.render.capture`` (render and save a capture folder), ``.poses`` (orbits, camera records ⇄
``vtkCamera``), ``.presets`` (the shipped ``presets.xml``), ``.images`` (view and segment-ID PNGs).
Importing this package imports neither ``slicer`` nor VTK's rendering; the capture functions do.
"""
