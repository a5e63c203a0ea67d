"""The platform as an OpenID Connect provider for its hosted apps (`provider.py`)."""
