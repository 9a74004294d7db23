"""First-party plugins. Each is written exactly as a third-party plugin would be."""
