"""The graph IR: interned nodes, graphs, the text printer and the file format."""
