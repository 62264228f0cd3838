"""Diffusion algorithms: samplers, schedules, conditioning, prompt weighting."""
