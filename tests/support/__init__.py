"""Shared test support: small random-weight model fixtures and the LDM converter."""
