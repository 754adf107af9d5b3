"""Prompted segmentation (SAM, HQ-SAM, LiteMedSAM, HQ-LiteMedSAM), propagation and fine-tuning."""
