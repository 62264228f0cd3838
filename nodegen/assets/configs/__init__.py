"""Shipped diffusers configs of the full-size SD families (defaults for derived configs)."""
