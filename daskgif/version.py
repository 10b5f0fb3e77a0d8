"""daskgif's version: one place, read by the package face and by what records it (frame manifests)."""

__version__ = "0.1.0"
