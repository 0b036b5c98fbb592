"""osm: an SMI-compliant service mesh in Python, after Open Service Mesh."""

__version__ = "0.1.0"
