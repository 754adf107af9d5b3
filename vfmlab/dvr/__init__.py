"""DeepDVR (Weiss & Navab, "Deep Direct Volume Rendering"): differentiable emission-absorption ray
marching in torch, the paper's models (lookup TF ... DVRNet), training with stepsize annealing as a
background job, and export of learned transfer functions to Slicer's volume rendering.

Modules: ``geometry`` (rays in the volume's frame), ``marcher`` (the DVR unit), ``empty_space``,
``fields``, ``transfer_functions``, ``models`` (registry), ``captures`` (training data), ``train``,
``inference``, ``export``, ``commands`` (CLI), ``demo_stage``. Captures and re-renders go through
Slicer's volume rendering (:mod:`vfmlab.render`, :mod:`vfmlab.mrml.volume_rendering`). Nothing heavy
is imported here.
"""
