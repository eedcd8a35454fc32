"""KernelGAN's one engine, shared by the single-image estimator and the tile pass of a kernel map.

``config`` (options and presets), ``kernels`` (anchors, post-processing), ``crops`` (where crops are drawn),
``schedule`` (anchor phase, early stop), ``fit`` (T fits as one network; one image is T = 1),
``dmap`` (D's verdict over the input, shared with ``meta``), ``confidence`` (the check against the learned
estimate, shared with ``meta``) and ``progress`` (every stage on one scale).
"""
