"""The mesh's resource model: typed, immutable objects parsed from manifests.

Pure: no I/O beyond reading the manifest files a caller names. Import the submodules
(`kinds`, `manifest`, `core`, `smi`, `config`) rather than names from here.
"""
