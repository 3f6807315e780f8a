"""Command groups of the workbench CLI: each module has ``register(subparsers)``."""
