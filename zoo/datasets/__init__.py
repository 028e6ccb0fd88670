"""Dataset builders (preference datasets from scripted behaviour, ...)."""
