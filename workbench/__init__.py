"""Command line and experiment orchestration for the ReSID workbench."""
