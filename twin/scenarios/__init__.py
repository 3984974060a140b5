"""Built-in scenarios (YAML files here) and the generator for large clusters."""
