"""The notification plugin's container code (run.py): only the standard library and PyYAML."""
