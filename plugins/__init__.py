"""Clarity's built-in plugins (one folder each) and the plugin SDK (`plugins.sdk`).

Every plugin, built in or third-party, is found through the `clarity.plugins` entry point group;
see docs/plugins.md.
"""
