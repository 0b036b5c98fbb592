"""The bookstore demo, after OSM's: clients buy books from a split bookstore that restocks.

bookbuyer and bookthief (one program, `client`, with different identities) call the
bookstore apex; the mesh splits that between bookstore-v1 and bookstore-v2, which restock
from bookwarehouse. The apps only count outcomes; the mesh decides who may call whom.
Run one with ``python -m osm.demo.bookstore bookstore|bookwarehouse|client|view``.
"""
