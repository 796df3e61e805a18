"""Running graphs: sessions, feeds and fetches."""
