"""The container side of the transformation plugin: `python3 -m plugins.transformation.src.run`."""
