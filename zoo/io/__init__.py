"""Models in files: zoo's weights files, pretrained weights from caches and hubs, exported models."""
