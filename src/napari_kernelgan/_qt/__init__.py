"""The napari dock widgets, one per module, over Qt-free models.

``models`` holds everything that needs no display (run states, progress text,
input selection, option forms); ``runner`` runs a job in napari's thread
worker; ``task_widget`` is the base the ``estimate_widget``, ``sr_widget`` and
``batch_widget`` (the batch engine on files from disk) build on;
``options_form`` turns a method spec into a form. This package module
imports none of them, so importing it loads no Qt.
"""
