"""The bundled sample CT in Slicer's Sample Data module, and loading it with its organ segmentation.

Two entries are registered in the "VFM Volume Lab" category:

* ``VFMSampleCT``: the CT alone, through Sample Data's own downloader. The URI is a ``file://`` URI
  of the copy shipped with the extension (Sample Data fetches URIs with ``urllib``, which reads
  ``file://`` URIs but not bare paths) and the checksum guards the copy it makes into its cache.
* ``VFMSampleCTOrgans``: the CT plus its 61 TotalSegmentator reference organs as one named
  segmentation, through :func:`load_sample_with_segmentation` (a custom downloader, since Sample
  Data alone would name the segments "Label 1", "Label 2", ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

CATEGORY = "VFM Volume Lab"
SAMPLE_NAME = "VFMSampleCT"
ORGANS_SAMPLE_NAME = "VFMSampleCTOrgans"
SEGMENTATION_NODE_NAME = "VFMSampleCT organs"
# SHA-256 of Resources/SampleData/VFMSampleCT.nii.gz and of its label map (checked by the tests).
SAMPLE_CT_SHA256 = "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"
SAMPLE_LABELS_SHA256 = "e8097758e56e73099075b6caaebce23ef11bc6fad66a4ec3753b9406846558c7"
# Soft-tissue window for abdomen CT (Hounsfield units).
SOFT_TISSUE_WINDOW = 400.0
SOFT_TISSUE_LEVEL = 40.0


def icons_dir() -> Path:
    """``Resources/Icons`` of the VFM Volume Lab module, in a checkout and in an installed extension."""
    return Path(__file__).resolve().parents[1] / "Resources" / "Icons"


def sample_data_sources(organs_loader: Optional[Callable] = None) -> list[dict]:
    """Keyword arguments for ``SampleDataLogic.registerCustomSampleDataSource``, one dict per entry.

    ``organs_loader(source)`` loads the CT with its segmentation; without it only the CT entry is made.
    """
    from vfmlab.sample_data import sample_ct_path, sample_labels_path

    ct = sample_ct_path()
    sources = [
        dict(
            category=CATEGORY,
            sampleName=SAMPLE_NAME,
            uris=ct.as_uri(),
            fileNames=ct.name,
            nodeNames=SAMPLE_NAME,
            thumbnailFileName=str(icons_dir() / f"{SAMPLE_NAME}.png"),
            loadFileType="VolumeFile",
            checksums=f"SHA256:{SAMPLE_CT_SHA256}",
        )
    ]
    if organs_loader is not None:
        labels = sample_labels_path()
        sources.append(
            dict(
                category=CATEGORY,
                sampleName=ORGANS_SAMPLE_NAME,
                uris=labels.as_uri(),
                fileNames=labels.name,
                nodeNames=SEGMENTATION_NODE_NAME,
                thumbnailFileName=str(icons_dir() / f"{ORGANS_SAMPLE_NAME}.png"),
                loadFileType="SegmentationFile",
                checksums=f"SHA256:{SAMPLE_LABELS_SHA256}",
                customDownloader=organs_loader,
            )
        )
    return sources


def register_sample_data(sample_data_logic, organs_loader: Optional[Callable] = None) -> list[str]:
    """Register the entries not registered yet (a module reload must not add duplicates).

    ``sample_data_logic`` is ``SampleData.SampleDataLogic`` (its static methods are used). Returns
    the names registered by this call.
    """
    taken = {source.sampleName for source in sample_data_logic.sampleDataSourcesByCategory(CATEGORY)}
    registered = []
    for kwargs in sample_data_sources(organs_loader):
        if kwargs["sampleName"] in taken:
            continue
        sample_data_logic.registerCustomSampleDataSource(**kwargs)
        registered.append(kwargs["sampleName"])
    return registered


def load_sample_with_segmentation(scene):
    """Add the sample CT and its named organ segmentation to ``scene``; returns ``(volume, segmentation)``.

    The CT is read with :mod:`vfmlab.volume_io` and added without a storage node, so saving the scene
    writes a new file instead of overwriting the copy inside the extension. On failure nothing
    stays in the scene.
    """
    from vfmlab.volume_io import read_labels, read_volume
    from vfmlab.mrml import add_segmentation_from_labels, add_volume_node
    from vfmlab.sample_data import sample_ct_path, sample_label_names, sample_labels_path

    ct = read_volume(sample_ct_path())
    labels = read_labels(sample_labels_path(), ct)
    names = sample_label_names()
    volume_node = add_volume_node(scene, ct, name=SAMPLE_NAME)
    try:
        display = volume_node.GetDisplayNode()
        if display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevel(SOFT_TISSUE_WINDOW, SOFT_TISSUE_LEVEL)
        segmentation_node = add_segmentation_from_labels(
            scene, labels, volume_node, names=names, node_name=SEGMENTATION_NODE_NAME
        )
    except BaseException:
        display = volume_node.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(volume_node)
        raise
    return volume_node, segmentation_node
