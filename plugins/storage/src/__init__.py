"""The container side of the storage plugin: `python3 -m plugins.storage.src.run`."""
