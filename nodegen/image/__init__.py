"""Image helpers shared by the library: conversions between tensors and PIL images, and tiling."""
