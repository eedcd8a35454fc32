"""``python -m napari_kernelgan.cli``: the command line."""
from . import main

raise SystemExit(main())
