"""The deployable image (top-level Dockerfile) and its documentation."""
