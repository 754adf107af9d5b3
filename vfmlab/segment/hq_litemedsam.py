"""HQ-LiteMedSAM: LiteMedSAM with HQ-SAM's high-quality output token and feature fusion.

HQ-SAM adds to SAM's mask decoder a learnable HQ output token with its own MLP, and fuses an early
encoder feature map with the final image embedding. Its light variant (``vit_tiny``) does this on
TinyViT's second stage (160 channels on the 64 x 64 grid), and LiteMedSAM's encoder is a TinyViT with
the same stage widths and the same 64 x 64 grid, so segment_anything_hq's ``MaskDecoderHQ`` fits as
it is. The SAM part of the decoder keeps LiteMedSAM's weights; the HQ parts start fresh, with the HQ
MLP's output layer at zero so that the HQ mask starts empty. Before fine-tuning, the model's mask is
then LiteMedSAM's, changed only through the attention the (untrained) HQ token takes part in.
"""
from __future__ import annotations

import torch
from torch import nn

# Parameters that LiteMedSAM's checkpoint does not have: trained by fine-tuning.
HQ_PARAMETER_PREFIXES = (
    "mask_decoder.hf_token.",
    "mask_decoder.hf_mlp.",
    "mask_decoder.compress_vit_feat.",
    "mask_decoder.embedding_encoder.",
    "mask_decoder.embedding_maskfeature.",
)
EARLY_STAGE = 1  # TinyViT stage whose output HQ-SAM fuses
EARLY_CHANNELS = 160


def hq_mask_decoder(sam_decoder: nn.Module) -> nn.Module:
    """An HQ decoder carrying ``sam_decoder``'s weights (same transformer and token layout)."""
    from segment_anything_hq.modeling import MaskDecoderHQ

    # A fixed seed for the fresh HQ parts: every build of the un-tuned model gives the same masks.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        decoder = MaskDecoderHQ(
            transformer_dim=sam_decoder.transformer_dim,
            transformer=sam_decoder.transformer,
            num_multimask_outputs=sam_decoder.num_multimask_outputs,
            iou_head_depth=sam_decoder.iou_prediction_head.num_layers,
            iou_head_hidden_dim=sam_decoder.iou_prediction_head.layers[0].out_features,
            vit_dim=EARLY_CHANNELS,
        )
    missing, unexpected = decoder.load_state_dict(sam_decoder.state_dict(), strict=False)
    assert not unexpected and all(f"mask_decoder.{k}".startswith(HQ_PARAMETER_PREFIXES) for k in missing)
    output_layer = decoder.hf_mlp.layers[-1]
    nn.init.zeros_(output_layer.weight)
    nn.init.zeros_(output_layer.bias)
    return decoder


def encode_with_early_features(tiny_vit: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LiteMedSAM's TinyViT forward that also returns stage-2 tokens as ``(B, 64, 64, 160)``.

    ``(B, 3, 256, 256)`` → embedding ``(B, 256, 64, 64)`` and ``[early (B, 64, 64, 160)]``; the same
    computation as ``TinyViT.forward_features``, keeping one intermediate it discards.
    """
    x = tiny_vit.patch_embed(x)
    early = []
    for index, layer in enumerate(tiny_vit.layers):
        x = layer(x)
        if index == EARLY_STAGE:
            early.append(x.view(x.shape[0], 64, 64, -1))
    x = x.view(x.shape[0], 64, 64, -1).permute(0, 3, 1, 2)
    return tiny_vit.neck(x), early
