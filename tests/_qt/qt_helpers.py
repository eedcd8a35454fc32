"""Helpers of the widget tests (imported by them as ``qt_helpers``; tests/_qt is on ``sys.path``)."""
from __future__ import annotations

import numpy as np

PLUGIN = "napari-kernelgan"


class Notifications:
    """napari notifications recorded since the fixture started."""

    def __init__(self) -> None:
        from napari.utils.notifications import notification_manager

        self.manager = notification_manager
        self.start = len(notification_manager.records)

    def since(self, severity: str | None = None) -> list:
        records = self.manager.records[self.start:]
        return [r for r in records if severity is None or r.severity.value == severity]

    @property
    def errors(self) -> list:
        return self.since("error")

    def mark(self) -> None:
        self.start = len(self.manager.records)



def world_extent(layer) -> np.ndarray:
    """Outer pixel edges of the last two axes in world coordinates."""
    shape = np.asarray(layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:])
    scale, translate = np.asarray(layer.scale[-2:]), np.asarray(layer.translate[-2:])
    return np.stack([translate - 0.5 * scale, translate + (shape - 0.5) * scale])


def view_rect(viewer) -> np.ndarray:
    """World min/max of the two displayed axes the canvas shows."""
    camera = viewer.scene.camera
    half = np.asarray(viewer.canvas.size, float) / (2 * camera.zoom)
    centre = np.asarray(camera.center)[-2:]
    return np.stack([centre - half, centre + half])


def in_view(viewer, layer) -> bool:
    ext, rect = world_extent(layer), view_rect(viewer)
    return bool(np.all(ext[0] >= rect[0] - 1e-6) and np.all(ext[1] <= rect[1] + 1e-6))
