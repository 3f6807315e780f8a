"""ReSID workbench library: data, E-stage encoders, Q-stage quantizers, G-stage recommender."""
__version__ = "0.1.0"
