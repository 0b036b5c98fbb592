"""Demo applications that run inside the mesh to show what it does: the bookstore demo
(`osm.demo.bookstore`) and HTTP/2, gRPC and TCP apps (`osm.demo.protocols`)."""
