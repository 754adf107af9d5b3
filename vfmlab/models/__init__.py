"""One catalogue of every model of every pillar (segmenter, probe, dvr, btvae); imports no torch."""
from .catalogue import ALIASES, CATALOGUE, FAMILIES, CatalogueEntry, Family, Role, builder, get, load, names

__all__ = ["ALIASES", "CATALOGUE", "FAMILIES", "CatalogueEntry", "Family", "Role", "builder", "get", "load", "names"]
