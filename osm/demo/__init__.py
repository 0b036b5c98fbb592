"""Demo applications that run inside the mesh to show what it does (the bookstore demo)."""
