"""Model sampling of a latent consistency (LCM) model (Luo et al. 2023, "Latent Consistency
Models"), as ComfyUI's ``ModelSamplingDiscrete`` with ``sampling = lcm`` does it.

* The sigma table keeps the 50 timesteps LCM was distilled on: ``skip = T // 50`` and table entry
  ``k`` is the training sigma of timestep ``k * skip + skip - 1`` (19, 39, ..., 999 for T = 1000).
* The UNet is called with that training timestep (the nearest table entry's); fractional timesteps
  on the 0..T-1 axis map back onto the table by ``(t - (skip - 1)) / skip``, interpolated in log-sigma.
* The output is eps; the denoised estimate has the consistency boundary condition
  ``c_skip * x + c_out * x0`` with ``x0 = x - sigma * eps``, ``c_skip = s_d^2 / (ts^2 + s_d^2)``,
  ``c_out = ts / sqrt(ts^2 + s_d^2)``, ``ts = 10 * timestep`` and ``s_d = 0.5`` (diffusers'
  ``LCMScheduler.get_scalings_for_boundary_condition_discrete``; ComfyUI applies it to the
  unscaled sample ``x``, which is what nodegen does).
"""

from __future__ import annotations

import torch

from nodegen.diffusion.model_sampling import ModelSampling, _bcast

ORIGINAL_STEPS = 50
SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0


class DistilledModelSampling(ModelSampling):
    def __init__(self, alphas_cumprod: torch.Tensor):
        super().__init__(alphas_cumprod, "lcm")
        full = self.sigmas
        self.total_timesteps = len(full)
        self.skip = self.total_timesteps // ORIGINAL_STEPS
        keep = torch.arange(ORIGINAL_STEPS) * self.skip + (self.skip - 1)
        keep = keep + (self.total_timesteps - 1 - int(keep[-1]))  # end on the last timestep
        self.sigmas = full[keep]
        self.log_sigmas = self.sigmas.log()

    @property
    def num_timesteps(self) -> int:
        """The timestep axis (0..T-1) the UNet, the schedules and ControlNet ranges use."""
        return self.total_timesteps

    def _offset(self) -> int:
        return self.total_timesteps - 1 - (ORIGINAL_STEPS - 1) * self.skip

    def sigma_to_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return super().sigma_to_t(sigma) * self.skip + self._offset()

    def nearest_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return super().nearest_t(sigma) * self.skip + self._offset()

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return self.nearest_t(sigma)

    def t_to_sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).cpu()
        k = ((t - self._offset()) / self.skip).clamp(0, len(self.sigmas) - 1)
        low, high, w = k.floor().long(), k.ceil().long(), k.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        ts = self.nearest_t(sig) * TIMESTEP_SCALING
        c_skip = SIGMA_DATA**2 / (ts**2 + SIGMA_DATA**2)
        c_out = ts / (ts**2 + SIGMA_DATA**2) ** 0.5
        sigma_b = _bcast(sig.to(x.dtype), x)
        x0 = x - model_output * sigma_b
        return _bcast(c_out.to(x.dtype), x) * x0 + _bcast(c_skip.to(x.dtype), x) * x
