"""BT-VAE segmentation for few labels (Park et al.), with monai U-Net baselines and uncertainty maps.

Stage 1 pretrains a VAE encoder without labels with a Barlow Twins objective on its latent
Gaussians (:mod:`.losses`, :mod:`.pretrain`); stage 2 fine-tunes the whole VAE on the labelled
slices (:mod:`.train`, :mod:`.run`); inference samples z several times for a mean mask and a
per-voxel variance (:mod:`.inference`). Models are built by name (:mod:`.registry`): ``btvae``,
``vae``, ``unet``, ``bt-unet``. :mod:`.study` trains all of them over label ratios.

Nothing heavy is imported here: the CLI imports :mod:`.commands` to list its subcommands.
"""
