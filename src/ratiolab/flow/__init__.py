"""Flow and diffusion policies: denoising steps as tokens with Gaussian per-step ratios.

:mod:`ratiolab.flow.sampler` (the K-step Gaussian sampler and its ``[B, K]`` step log-probs for the
objective registry), :mod:`ratiolab.flow.gaussian` (step densities, PolicyFlow's endpoint ratio),
:mod:`ratiolab.flow.core` (the registry of denoising-error losses: Diffusion-DRO, SePPO),
:mod:`ratiolab.flow.matching` (conditional flow matching) and :mod:`ratiolab.flow.toy` (the 2-D toy).
"""

from ratiolab.flow import dro, seppo
from ratiolab.flow.core import FLOW_LOSSES, compute, denoising_error
from ratiolab.flow.gaussian import endpoint_log_ratio, gaussian_step_logp
from ratiolab.flow.matching import cfm_loss
from ratiolab.flow.sampler import FlowPolicy, Trajectory, VelocityNet, step_inputs

__all__ = [
    "FLOW_LOSSES", "FlowPolicy", "Trajectory", "VelocityNet", "cfm_loss", "compute", "denoising_error", "dro",
    "endpoint_log_ratio", "gaussian_step_logp", "seppo", "step_inputs",
]
