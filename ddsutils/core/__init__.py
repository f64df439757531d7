"""What a user of real checkpoints needs: the StyleGAN2 generator and its loaders, the weights manifest,
the one-shot segmenter, the DDS losses and modes, backbones, metrics and file I/O. Never imports ``toy`` or ``lab``.
"""
