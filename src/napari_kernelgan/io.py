"""Image and kernel files. Every write is atomic: a temporary file in the same
folder, renamed over the target only once complete."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import BadInputError, KernelGANError, MissingFileError, OutputError
from .physics.conventions import validate_kernel

KERNEL_SUFFIXES = (".mat", ".npy", ".tif", ".tiff")
MAT_KEY = "Kernel"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` on success only.

    A failing write (permission denied, disk full) raises :class:`~napari_kernelgan.errors.OutputError`
    naming the target, and leaves neither the target nor the temporary file behind.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp_path, 0o666 & ~mask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except KernelGANError:  # raised by the writer about its input (bad data, a missing file): not an output error
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_kernel_array(path: str | os.PathLike) -> np.ndarray:
    """The array of a ``.mat`` (key ``'Kernel'``, or its one variable), ``.npy`` or ``.tif`` file, unchecked (a
    2-D kernel, or a 3-D bead stack: :func:`napari_kernelgan.measured_psf.read_psf` reads that with its pixel
    size)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise MissingFileError(f"kernel file not found: {path}")
    try:
        if suffix == ".mat":
            from scipy.io import loadmat

            content = loadmat(path)
            keys = [k for k in content if not k.startswith("__")]
            key = MAT_KEY if MAT_KEY in content else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise BadInputError(f"no '{MAT_KEY}' variable in {path.name} (found: {', '.join(keys) or 'none'})")
            arr = content[key]
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            raise BadInputError(f"unsupported kernel file type {suffix!r}; use one of {', '.join(KERNEL_SUFFIXES)}")
    except BadInputError:
        raise
    except Exception as exc:  # corrupt files raise many types; report them one way
        raise BadInputError(f"could not read kernel file {path.name}: {exc}") from exc
    return np.squeeze(np.asarray(arr))


def read_kernel(path: str | os.PathLike) -> np.ndarray:
    """Read a kernel from ``.mat`` (key ``'Kernel'``), ``.npy`` or ``.tif``; validated, sums to 1.

    Files are taken to be in this package's orientation (correlation), as the
    DIV2KRK / KernelGAN ``.mat`` files are, and on the SR grid, as they are used.
    Any odd size is taken (a measured PSF needs more than 13×13). A bead image
    or stack at the camera's pixel size is a PSF, not yet a kernel:
    :func:`napari_kernelgan.measured_psf.kernel_from_psf_file` makes the kernel.
    """
    # Kernel files are often stored unnormalised (e.g. PSFs measured in counts).
    return validate_kernel(read_kernel_array(path), name=f"kernel in {Path(path).name}", normalise=True)


def write_kernel(path: str | os.PathLike, kernel: np.ndarray) -> Path:
    """Write a kernel as ``.mat`` (key ``'Kernel'``), ``.npy`` or ``.tif``, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2:
        raise BadInputError(f"a kernel must be 2-D, got shape {k.shape}")
    with atomic_path(path) as tmp:
        if suffix == ".mat":
            from scipy.io import savemat

            savemat(tmp, {MAT_KEY: k})
        elif suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, k)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, k.astype(np.float32))
        else:
            raise BadInputError(f"unsupported kernel file type {suffix!r}; use one of {', '.join(KERNEL_SUFFIXES)}")
    return path


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF (via tifffile) or any format scikit-image reads; RGBA with opaque alpha → RGB."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image file not found: {path}")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from skimage.io import imread

            arr = imread(path)
    except Exception as exc:
        raise BadInputError(f"could not read image {path.name}: {exc}") from exc
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 4 and np.all(arr[..., 3] == arr[..., 3].max()):
        arr = arr[..., :3]
    return arr


def write_image(path: str | os.PathLike, image: np.ndarray, **tiff_kwargs) -> Path:
    """Write an image atomically: TIFF via tifffile (any dtype), PNG/JPEG via scikit-image."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, np.asarray(image), **tiff_kwargs)
        else:
            from skimage.io import imsave

            imsave(tmp, np.asarray(image), check_contrast=False)
    return path
