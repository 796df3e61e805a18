"""Graph-to-graph passes, their registry and the instrumented pipeline driver."""
