"""How a run executes: the in-process Grid (default) or Flower's own runtimes."""
