"""The denoiser: a ``DiffusionModel``'s UNet as ``model(x, sigma) -> denoised`` for the samplers.

Per call it
1. blends the known region for inpainting with a ``noise_mask`` (1 = repaint): before the UNet,
   ``x = x * m + (latent + noise * sigma) * (1 - m)`` (flow models: ``latent * (1 - sigma) + noise * sigma``); after, ``denoised = denoised * m + latent * (1 - m)``
   (ComfyUI's KSamplerX0Inpaint; on binary masks equal to diffusers' legacy 4-channel inpainting);
2. scales the input ``c_in * x``, appends the 9-channel inpaint inputs (mask, masked-image
   latents) for ``in_channels == 9`` models;
3. runs negative and positive CondItems batched into as few UNet calls as possible, negative
   first (diffusers' ``[uncond, cond]`` order, so a plain txt2img run is the same computation);
   embeddings of different token lengths are repeated to a common length (exact: attention over
   repeated keys is unchanged); SDXL gets ``added_cond_kwargs``; SD 2.1 unCLIP models get
   ``class_labels`` (and SDXL's pooled output gives way to an image embedding: "revision") from the
   items' unCLIP entries (:mod:`nodegen.diffusion.unclip`); ControlNet residuals come from
   ``extras["controls"]``;
4. converts eps / v to denoised, combines several CondItems by weight and area, applies CFG.

SDXL ``time_ids``: ``[height, width, crop_h, crop_w, target_height, target_width]`` from the
CondItem extras (defaults: the latent size x 8 and no crop); the refiner uses
``[height, width, crop_h, crop_w, aesthetic_score]`` (default score 6.0 for positive, 2.5 for
negative, diffusers' defaults).

Guidance options: ``model.options["rescale_cfg"]`` (a multiplier) rescales CFG on v
(:mod:`nodegen.diffusion.rescale_cfg`).

Pre-CFG hooks: ``model.options["pre_cfg_hooks"]`` (a list; ComfyUI's sampler_pre_cfg_function)
are called in order before guidance as ``hook(denoiser, x, sigma, cond, uncond) -> (cond, uncond)``
on the denoised predictions (``uncond`` is None where the negative was skipped); what they return is
what CFG, the hooks and ``last_cond`` / ``last_uncond`` see (Adaptive Projected Guidance).
``denoiser.run_state`` is a dict for state a hook keeps through one sampling run (a new Denoiser
is made per run).

Hooks: ``model.options["denoise_hooks"]`` (a list; set on a clone of the MODEL) are called in
order after guidance, before the inpainting blend, as ``hook(denoiser, x, sigma, denoised) ->
denoised``. A hook may call :meth:`Denoiser.predict_positive` with gradients enabled (CLIP
guidance does) and read the step's ``last_cond`` / ``last_uncond`` predictions (Perturbed-Attention
Guidance does; ``ran_uncond`` says whether the step made an unconditional prediction, else
``last_uncond`` is ``last_cond``); it can check cancellation through ``denoiser.ctx``. Around each UNet call
``step_context.batch_layout`` says which chunks of its batch are negative (Self-Attention Guidance
keeps the unconditional chunk's attention map).

GLIGEN: CondItems with ``extras["gligen"]`` (GLIGENTextBoxApply) pass their boxes to the fusers
installed for the run (:mod:`nodegen.models.gligen`); a negative without boxes takes the positive's.

ControlNet progress: the fraction of the schedule done measured on the timestep axis,
``1 - t(sigma) / (T - 1)`` (ComfyUI's percent <-> sigma mapping), so it works for any sigmas.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nodegen.diffusion import cfg as cfg_mod
from nodegen.diffusion import unclip
from nodegen.diffusion.flow_forward import FLOW_FAMILIES, run_flow
from nodegen.diffusion.latent_scale import concat_in_model_scale
from nodegen.diffusion.model_sampling import ModelSampling, percent_to_sigma
from nodegen.diffusion.step_context import batch_layout, current_sigma
from nodegen.image.composite import repeat_to_batch
from nodegen.image.latent_resize import resize
from nodegen.models import gligen
from nodegen.models.objects import SCALING_FACTORS


def resize_mask(mask: torch.Tensor, h: int, w: int, batch: int, mode: str = "bilinear") -> torch.Tensor:
    """A MASK ``[B,H,W]`` / ``[B,1,H,W]`` / ``[H,W]`` as ``[batch,1,h,w]`` float."""
    m = mask.float()
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m, size=(h, w), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return repeat_to_batch(m, batch)


class Denoiser:
    def __init__(self, model, unet, positive: list, negative: list | None, cfg: float, *,
                 latent_image: torch.Tensor, noise: torch.Tensor | None = None,
                 noise_mask: torch.Tensor | None = None, device=None, dtype=torch.float32,
                 model_sampling: ModelSampling | None = None, ctx=None):
        if not positive:
            raise ValueError("positive conditioning is empty")
        self.model = model
        self.unet = unet
        self.family = getattr(model, "family", "sd1")
        self.ms = model_sampling or ModelSampling.from_model(model)
        self.positive = list(positive)
        self.negative = gligen.ground_negative(self.positive, list(negative or []))  # ComfyUI's rule
        self.cfg = float(cfg)
        self.device = torch.device(device) if device is not None else latent_image.device
        self.dtype = dtype
        self.latent_image = latent_image.to(self.device, torch.float32)
        b, _, h, w = self.latent_image.shape
        self.noise = noise.to(self.device, torch.float32) if noise is not None else None
        self.noise_mask = None
        if noise_mask is not None:
            self.noise_mask = resize_mask(noise_mask, h, w, b).to(self.device)
        self.in_channels = 4 if self.family in FLOW_FAMILIES else int(getattr(unet.config, "in_channels", 4))
        self.calls = 0
        #: CFG++ samplers read the unconditional prediction of the last call (ComfyUI's
        #: ``uncond_denoised``); they set ``keep_uncond`` so it is computed even at cfg 1.
        self.keep_uncond = False
        self.last_cond: torch.Tensor | None = None
        self.last_uncond: torch.Tensor | None = None
        self.ran_uncond = False
        #: State that hooks keep through this sampling run (APG's momentum), keyed by the hook.
        self.run_state: dict = {}
        #: The sampling run's whole schedule (set by the caller; differential diffusion reads it).
        self.sigmas: torch.Tensor | None = None
        self.ctx = ctx
        #: The sampling run's seed (unCLIP draws its embedding noise from it, as ComfyUI).
        self.seed = 0
        self.hooks = list((getattr(model, "options", None) or {}).get("denoise_hooks", ()))
        self.pre_cfg_hooks = list((getattr(model, "options", None) or {}).get("pre_cfg_hooks", ()))
        self._weights: dict[tuple, torch.Tensor] = {}  # area weights, the same on every step

    # -- helpers -----------------------------------------------------------------------
    def progress_of(self, sigma: float) -> float:
        t = float(self.ms.sigma_to_t(sigma))
        return max(0.0, min(1.0, 1.0 - t / (self.ms.num_timesteps - 1)))

    def _time_ids(self, item, negative: bool, h: int, w: int) -> torch.Tensor:
        ex = item.extras
        height, width = ex.get("height", h * 8), ex.get("width", w * 8)
        crop_h, crop_w = ex.get("crop_h", 0), ex.get("crop_w", 0)
        if self.family == "sdxl_refiner":
            score = ex.get("aesthetic_score", 2.5 if negative else 6.0)
            vals = [height, width, crop_h, crop_w, score]
        else:
            vals = [height, width, crop_h, crop_w, ex.get("target_height", h * 8), ex.get("target_width", w * 8)]
        return torch.tensor([vals], dtype=torch.float32)

    def _concat(self, item, batch: int, h: int, w: int, area) -> torch.Tensor | None:
        """Extra input channels: 9-channel inpaint models take the mask and masked-image latents;
        8-channel InstructPix2Pix models the image's latents."""
        if self.in_channels <= 4:
            return None
        ex = item.extras
        if self.in_channels == 8:
            return self._ip2p_concat(ex, batch, h, w, area)
        mask = ex.get("concat_mask", self.noise_mask)
        masked = ex.get("concat_latent_image")
        masked = self.latent_image if masked is None else concat_in_model_scale(self.family, ex, masked)
        mask = (torch.ones(batch, 1, h, w) if mask is None else resize_mask(mask, h, w, batch, mode="nearest"))
        masked = masked.to(self.device, torch.float32)
        masked = repeat_to_batch(masked, batch)
        ah, aw, ay, ax = area
        out = torch.cat([mask.to(self.device), masked], dim=1)[:, :, ay : ay + ah, ax : ax + aw]
        extra = self.in_channels - 4
        if out.shape[1] != extra:
            raise ValueError(f"the model takes {self.in_channels} input channels; inpaint inputs give {4 + out.shape[1]}")
        return out

    def _ip2p_concat(self, ex: dict, batch: int, h: int, w: int, area) -> torch.Tensor:
        """The image latents (InstructPixToPixConditioning's ``concat_latent_image``) as the
        models were trained on them: unscaled (ComfyUI's IP2P and diffusers' pipeline give them so),
        or in the model's scale for CosXL edit (a checkpoint with ComfyUI's ``edm_vpred`` marker;
        diffusers' ``is_cosxl_edit``), fitted to the latent's size and batch; zeros without an image."""
        image = ex.get("concat_latent_image")
        if image is None:
            image = torch.zeros(batch, 4, h, w)
        else:
            image = concat_in_model_scale(self.family, ex, image)
            if not (getattr(self.model, "options", None) or {}).get("ip2p_image_scaled"):
                image = image / SCALING_FACTORS.get(self.family, 1.0)
            if tuple(image.shape[-2:]) != (h, w):
                image = resize(image.float(), w, h, "bilinear", crop="center")
            image = repeat_to_batch(image, batch)
        ah, aw, ay, ax = area
        return image.to(self.device, torch.float32)[:, :, ay : ay + ah, ax : ax + aw]

    # -- the call ------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra) -> torch.Tensor:
        self.calls += 1
        sig = sigma.reshape(-1)[0] if torch.is_tensor(sigma) and sigma.ndim else torch.as_tensor(sigma)
        sig_f = float(sig)
        token = current_sigma.set(sig_f)  # for model patches that act in a window of the schedule
        try:
            return self._denoise(x, sig_f)
        finally:
            current_sigma.reset(token)

    def _denoise(self, x: torch.Tensor, sig_f: float) -> torch.Tensor:
        step_mask = self._step_mask(sig_f)
        if step_mask is not None:
            m = step_mask.to(x.dtype)
            noise = self.noise if self.noise is not None else torch.zeros_like(x)
            if self.family in FLOW_FAMILIES:  # the known region at this noise level, flow-style
                known = self.latent_image * (1 - sig_f) + noise * sig_f
            else:
                known = self.latent_image + noise * sig_f
            x = x * m + known * (1 - m)
        b, _, h, w = x.shape
        jobs = []  # (is_negative, item, area)
        with_negative = (self.cfg != 1.0 or self.keep_uncond) and bool(self.negative)
        if with_negative:
            jobs += [(True, it, cfg_mod.area_of(it, h, w)) for it in self.negative if self._active(it, sig_f)]
        jobs += [(False, it, cfg_mod.area_of(it, h, w)) for it in self.positive if self._active(it, sig_f)]
        pos, neg = self._predictions(x, sig_f, jobs)
        cond = cfg_mod.combine(pos, x)
        uncond = cfg_mod.combine(neg, x) if with_negative else None
        for pre in self.pre_cfg_hooks:
            cond, uncond = pre(self, x, sig_f, cond, uncond)
        out = self._guidance(cond, uncond, x, sig_f)
        self.last_cond = cond
        self.last_uncond = uncond if uncond is not None else cond
        self.ran_uncond = uncond is not None
        for hook in self.hooks:
            out = hook(self, x, sig_f, out)
        if step_mask is not None:
            m = step_mask.to(out.dtype)
            out = out * m + self.latent_image * (1 - m)
        return out

    def _guidance(self, cond: torch.Tensor, uncond: torch.Tensor | None, x: torch.Tensor,
                  sigma: float) -> torch.Tensor:
        """CFG; rescaled on v when the MODEL has the ``rescale_cfg`` option (RescaleCFG node)."""
        multiplier = (getattr(self.model, "options", None) or {}).get("rescale_cfg")
        if multiplier is None or uncond is None or sigma <= 0:
            return cfg_mod.guidance(cond, uncond, self.cfg)
        from nodegen.diffusion.rescale_cfg import rescaled_guidance

        return rescaled_guidance(cond, uncond, self.cfg, x, sigma, float(multiplier))

    def predict_positive(self, x: torch.Tensor, sigma: float, *, active_only: bool = False) -> torch.Tensor:
        """The positive conditionings' combined denoised prediction (no CFG, no inpainting blend);
        differentiable when called with gradients enabled. ``active_only``: only the conditionings
        whose timestep range holds ``sigma`` (those the step's own prediction used)."""
        return self.predict(self.positive, x, sigma, active_only=active_only)

    def predict(self, items: list, x: torch.Tensor, sigma: float, *, active_only: bool = False) -> torch.Tensor:
        """The combined denoised prediction of the conditioning ``items`` (any: a hook may bring its
        own), as :meth:`predict_positive`."""
        h, w = x.shape[-2:]
        jobs = [(False, it, cfg_mod.area_of(it, h, w)) for it in items
                if not active_only or self._active(it, float(sigma))]
        return cfg_mod.combine(self._predictions(x, float(sigma), jobs)[0], x)

    def _predictions(self, x: torch.Tensor, sig_f: float, jobs: list) -> tuple[list, list]:
        """Denoised predictions of ``jobs`` as ``(positive, negative)`` lists of (pred, area, weight)."""
        b, _, h, w = x.shape
        sigma_vec = torch.full((b,), sig_f, dtype=torch.float32, device=x.device)
        t = self.ms.timestep(sig_f)
        c_in = float(self.ms.c_in(torch.tensor(sig_f, dtype=torch.float64)))
        outs: dict[int, torch.Tensor] = {}
        # group by area: one UNet call per distinct area
        groups: dict[tuple, list[int]] = {}
        for k, (_, _, area) in enumerate(jobs):
            groups.setdefault(area, []).append(k)
        for area, ks in groups.items():
            ah, aw, ay, ax = area
            xs = x[:, :, ay : ay + ah, ax : ax + aw]
            layout = batch_layout.set(tuple(jobs[k][0] for k in ks))  # which chunks are negative
            try:
                preds = self._run_group([jobs[k] for k in ks], xs, sig_f, t, c_in, h, w, area)
            finally:
                batch_layout.reset(layout)
            for k, p in zip(ks, preds, strict=True):
                denoised = self.ms.denoised(xs, sigma_vec, p.float())
                outs[k] = denoised
        pos, neg = [], []
        for k, (is_neg, item, area) in enumerate(jobs):
            weight = self._area_weight(area, h, w, float(item.extras.get("strength", 1.0)), x.device)
            if item.extras.get("mask") is not None:
                ah, aw, ay, ax = area
                m = cfg_mod.latent_mask(item.extras["mask"], h, w).to(x.device)[:, None, ay: ay + ah, ax: ax + aw]
                weight = weight * m[:b] * float(item.extras.get("mask_strength", 1.0))
            (neg if is_neg else pos).append((outs[k], area, weight))
        return pos, neg

    def _active(self, item, sigma: float) -> bool:
        """Whether ``item`` applies at ``sigma``: its ``timestep_start`` / ``timestep_end`` fractions
        (ConditioningSetTimestepRange) as sigmas on the timestep axis, as ComfyUI's percent_to_sigma."""
        start, end = item.extras.get("timestep_start"), item.extras.get("timestep_end")
        if start is not None and sigma > self._percent_sigma(start):
            return False
        return not (end is not None and sigma < self._percent_sigma(end))

    def percent_to_sigma(self, percent: float) -> float:
        """ComfyUI's ``percent_to_sigma`` for this model (samplers read it, e.g. sa_solver)."""
        return self._percent_sigma(percent)

    def _percent_sigma(self, percent: float) -> float:
        return percent_to_sigma(self.ms, percent)

    def _area_weight(self, area: tuple, h: int, w: int, strength: float, device) -> torch.Tensor:
        key = (area, h, w, strength, device)
        weight = self._weights.get(key)
        if weight is None:
            weight = self._weights[key] = cfg_mod.area_weight(area, h, w, strength, device=device)
        return weight

    def _step_mask(self, sigma: float) -> torch.Tensor | None:
        """The noise mask for this step. With differential diffusion (Levin & Fried 2023; the
        model option set by the DifferentialDiffusion node, as ComfyUI) a soft mask becomes
        binary per step: a pixel changes once the schedule's progress in timesteps passes
        ``1 - mask``, so grey areas change less; ``strength < 1`` mixes the soft mask back in."""
        strength = (getattr(self.model, "options", None) or {}).get("differential_diffusion")
        if self.noise_mask is None or strength is None:
            return self.noise_mask
        sigmas = self.sigmas if self.sigmas is not None else torch.tensor([self.ms.sigma_max, self.ms.sigma_min])
        sigma_to = max(float(self.ms.sigma_min), float(sigmas[-1]))
        ts_from, ts_to = float(self.ms.timestep(float(sigmas[0]))), float(self.ms.timestep(sigma_to))
        threshold = (float(self.ms.timestep(sigma)) - ts_to) / (ts_from - ts_to)
        binary = (self.noise_mask >= threshold).to(self.noise_mask.dtype)
        if strength and strength < 1:
            return strength * binary + (1 - strength) * self.noise_mask
        return binary

    def _run_group(self, jobs, xs, sig_f, t, c_in, h, w, area) -> list[torch.Tensor]:
        if self.family in FLOW_FAMILIES:
            return run_flow(self.family, self.unet, xs, sig_f, self.ms, [j[1] for j in jobs], self.device, self.dtype,
                            noise_mask=self.noise_mask, progress=self.progress_of(sig_f))
        b = xs.shape[0]
        tokens = [j[1].embeds.shape[1] for j in jobs]
        lcm = 1
        for n in tokens:
            lcm = lcm * n // math.gcd(lcm, n)
        embeds, pooled, time_ids, concats = [], [], [], []
        sdxl = self.family in ("sdxl", "sdxl_refiner")
        for is_neg, item, _ in jobs:
            e = item.embeds.to(self.device, self.dtype)
            if e.shape[1] != lcm:
                e = e.repeat(1, lcm // e.shape[1], 1)
            embeds.append(e.expand(b, -1, -1) if e.shape[0] == 1 else e)
            if sdxl:
                cfg_u = self.unet.config
                dim = int(getattr(cfg_u, "projection_class_embeddings_input_dim", 0) or 0)
                n_ids = 5 if self.family == "sdxl_refiner" else 6
                per_id = int(getattr(cfg_u, "addition_time_embed_dim", 256) or 256)
                p = unclip.sdxl_pooled(item.extras, self.seed, max(dim - n_ids * per_id, 1))  # revision
                p = item.pooled if p is None else p
                if p is None:
                    p = torch.zeros(1, max(dim - n_ids * per_id, 1))
                p = p.to(self.device, self.dtype)
                pooled.append(p.expand(b, -1) if p.shape[0] == 1 else p)
                time_ids.append(self._time_ids(item, is_neg, h, w).to(self.device, self.dtype).expand(b, -1))
            c = self._concat(item, b, h, w, area)
            if c is not None:
                concats.append(c)
        n = len(jobs)
        x_in = (xs * c_in).to(self.dtype)
        x_in = torch.cat([x_in] * n) if n > 1 else x_in
        if concats:
            x_in = torch.cat([x_in, torch.cat(concats).to(self.dtype)], dim=1)
        emb = torch.cat(embeds)
        kwargs = {}
        if sdxl:
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.cat(pooled), "time_ids": torch.cat(time_ids)}
        labels = unclip.class_labels(self.model, [j[1] for j in jobs], b, self.seed, self.device, self.dtype)
        if labels is not None:  # SD 2.1 unCLIP: the image embedding as class label
            kwargs["class_labels"] = labels
        timestep = torch.tensor(float(t), dtype=torch.float32, device=self.device)
        res = self._control_residuals(jobs, x_in, timestep, embeds, kwargs.get("added_cond_kwargs"), sig_f, b)
        if res is not None:
            kwargs["down_block_additional_residuals"], kwargs["mid_block_additional_residual"] = res
        feats = self._adapter_features(jobs, b, xs.shape[-2], xs.shape[-1], sig_f)
        if feats is not None:
            kwargs["down_intrablock_additional_residuals"] = feats
        ip_apps = (getattr(self.model, "options", None) or {}).get("ip_adapters")
        if ip_apps:  # IP-Adapter: this step's scales, image embeddings in job order
            from nodegen.models import ip_adapter

            ip_adapter.set_scales(self.unet, ip_apps, self.progress_of(sig_f))
            added = kwargs.setdefault("added_cond_kwargs", {})
            added["image_embeds"] = ip_adapter.image_embeds(ip_apps, [j[0] for j in jobs], b, self.device,
                                                            self.dtype)
        grounding = gligen.unet_inputs(self.unet, [j[1] for j in jobs], b, xs.shape[-2], xs.shape[-1], self.device, self.dtype)
        if grounding is not None:  # GLIGEN boxes (the fusers are installed for the run: nodegen.models.gligen)
            kwargs["cross_attention_kwargs"] = {"gligen": grounding}
        out = self.unet(x_in, timestep, encoder_hidden_states=emb, return_dict=False, **kwargs)[0]
        return list(out.chunk(n)) if n > 1 else [out]

    def _adapter_features(self, jobs, b: int, h: int, w: int, sig_f: float):
        """T2I-Adapter features per job (summed over its adapters), batched like the jobs."""
        if not any(getattr(c, "kind", "") == "t2i_adapter" for j in jobs for c in j[1].extras.get("controls") or []):
            return None
        progress = self.progress_of(sig_f)
        per_job = []
        for _, item, _ in jobs:
            total = None
            for control in item.extras.get("controls") or []:
                if getattr(control, "kind", "") != "t2i_adapter":
                    continue
                f = control.features(b, h, w, progress, self.device, self.dtype)
                if f is not None:
                    total = f if total is None else [a + c for a, c in zip(total, f, strict=True)]
            per_job.append(total)
        ref = next((t for t in per_job if t is not None), None)
        if ref is None:
            return None
        return [torch.cat([t[i] if t is not None else torch.zeros_like(f) for t in per_job])
                for i, f in enumerate(ref)]

    def _control_residuals(self, jobs, x_in, timestep, embeds, added, sig_f, b):
        if not any(getattr(c, "kind", "controlnet") == "controlnet"
                   for j in jobs for c in j[1].extras.get("controls") or []):
            return None
        progress = self.progress_of(sig_f)
        per_job = []
        for k, (_, item, _) in enumerate(jobs):
            xk = x_in[k * b : (k + 1) * b]
            pe = None if added is None else {key: v[k * b : (k + 1) * b] for key, v in added.items()}
            total = None
            for control in item.extras.get("controls") or []:
                if getattr(control, "kind", "controlnet") != "controlnet":
                    continue
                r = control.residuals(xk, timestep, embeds[k], pe, progress)
                if r is None:
                    continue
                down, mid = r
                if total is None:
                    total = (list(down), mid)
                else:
                    total = ([a + c for a, c in zip(total[0], down, strict=True)], total[1] + mid)
            per_job.append(total)
        ref = next((r for r in per_job if r is not None), None)
        if ref is None:
            return None
        downs = []
        for i, d in enumerate(ref[0]):
            downs.append(torch.cat([r[0][i] if r is not None else torch.zeros_like(d) for r in per_job]))
        mid = torch.cat([r[1] if r is not None else torch.zeros_like(ref[1]) for r in per_job])
        return downs, mid
