"""KernelGAN's one engine, shared by the single-image estimator and the tile pass of a kernel map.

``config`` (options and presets), ``kernels`` (anchor, post-processing), ``crops`` (where crops are drawn),
``schedule`` (anchor phase, early stop), ``fit`` (T fits as one network; one image is T = 1),
``dmap`` (D's verdict over the input, shared with ``meta``) and ``confidence``.
"""
