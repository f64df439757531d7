"""ddsutils — the work behind the DDS notebooks.

Dual-Domain Image Synthesis using Segmentation-Guided GAN (Bazazian, Calway, Damen, CVPR-W 2022),
re-implemented in pure PyTorch. Submodules are imported explicitly (no import-time side effects)::

    from ddsutils import stylegan2, weights, perceptual

- :mod:`ddsutils.stylegan2` — StyleGAN2 generator (rosinality layout) and ``load_generator``;
- :mod:`ddsutils.weights` — weights manifest, fetch / verify with sha256, offline mode;
- :mod:`ddsutils.perceptual` — VGG-16 / AlexNet / SqueezeNet / ResNet-18 feature extractors and LPIPS;
- :mod:`ddsutils.toyworld` — procedural faces with part labels in three styles (the offline toy world);
- :mod:`ddsutils.judges` — part parser and domain segmenter trained on toy-world renders only;
- :mod:`ddsutils.metrics` — Fréchet distance (and Fréchet distance on VGG-16 features, not FID);
- :mod:`ddsutils.paths` — where weights, runs and figures live.
"""
__version__ = "0.1.0"
