"""The container side of the validation plugin: `python3 -m plugins.validation.src.run`."""
