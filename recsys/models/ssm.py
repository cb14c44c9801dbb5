"""The two state-space layers of an SS4Rec block (arXiv:2502.08132).

* `TimeAwareS5`: S5 (Smith et al. 2023) with one discretisation step per event, taken from the
  real time gap: diagonal complex state, HiPPO-LegS initialisation, zero-order hold.
* `SelectiveSSM`: the Mamba layer (Gu & Dao 2023): input-dependent Δ, B, C, a causal
  depthwise convolution and a SiLU gate.

Both take a `mask` (B, L), True at real events; a padded step is an identity step (Δ = 0,
input 0), so padding never reaches the state.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.scans import diagonal_scan, selective_scan


def hippo_legs_normal(state_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (P,) and eigenvectors (P, P) of HiPPO-LegS's normal part, as in S5."""
    n = np.arange(state_size)
    q = np.sqrt(2 * n + 1.0)
    hippo = -(np.tril(np.outer(q, q)) - np.diag(n))  # A_nk = -q_n q_k (n > k), -(n+1) (n = k)
    low_rank = np.sqrt(n + 0.5)
    normal = hippo + np.outer(low_rank, low_rank)  # = -1/2 I + skew-symmetric
    imag, vectors = np.linalg.eigh(-1j * (normal + 0.5 * np.eye(state_size)))
    return -0.5 + 1j * imag, vectors


class TimeAwareS5(nn.Module):
    """S5 layer whose step size at event t is exp(log_step) times the normalised gap Δ_t.

    Conjugate symmetry: of the P HiPPO eigenvalues only the P/2 with positive imaginary part
    are stored, and the output is 2·Re(C̃ h) (exactly the P-state system).
    """

    def __init__(self, d_model: int, d_state: int, dt_min: float, dt_max: float) -> None:
        super().__init__()
        if d_state % 2:
            raise ValueError(f"d_state must be even (conjugate pairs), got {d_state}")
        eigvals, vectors = hippo_legs_normal(d_state)
        keep = eigvals.imag > 0  # one of each conjugate pair
        eigvals, vectors = eigvals[keep], vectors[:, keep]  # (P/2,), (P, P/2)
        b = np.random.default_rng(int(torch.randint(2**31, ())))  # follows torch's seed
        b_real = b.normal(0, 1 / math.sqrt(d_model), (d_state, d_model))  # lecun normal
        c_real = b.normal(0, 1 / math.sqrt(d_state), (d_model, d_state))
        b_tilde, c_tilde = vectors.conj().T @ b_real, c_real @ vectors  # (P/2, H), (H, P/2)
        as_param = lambda arr: nn.Parameter(torch.tensor(arr, dtype=torch.float32))  # noqa: E731
        self.log_neg_lambda_re = as_param(np.log(-eigvals.real))  # keeps Re Λ < 0
        self.lambda_im = as_param(eigvals.imag)
        # (re, im) pairs interleaved so one matmul yields a view_as_complex-able tensor
        self.B_pairs = as_param(np.stack([b_tilde.real, b_tilde.imag], 1).reshape(-1, d_model))
        self.C_pairs = as_param(np.stack([c_tilde.real, -c_tilde.imag], 2).reshape(d_model, -1))
        self.D = nn.Parameter(torch.rand(d_model))
        log_steps = torch.rand(d_state // 2) * (math.log(dt_max) - math.log(dt_min))
        self.log_step = nn.Parameter(log_steps + math.log(dt_min))  # S5's learnable step
        self.scan = diagonal_scan  # the benchmark swaps in the sequential reference

    def forward(
        self, x: torch.Tensor, step: torch.Tensor, mask: torch.Tensor, last_only: bool = False
    ) -> torch.Tensor:
        """x (B, L, H), step (B, L) normalised gap (>= 0), mask (B, L) -> (B, L, H).

        last_only: the output at the last position only, (B, 1, H).
        """
        x = x * mask.unsqueeze(-1)
        lam = torch.complex(-torch.exp(self.log_neg_lambda_re), self.lambda_im)  # (P/2,)
        delta = (step * mask).unsqueeze(-1) * torch.exp(self.log_step)  # (B, L, P/2)
        lam_bar = torch.exp(lam * delta)  # ZOH: exp(Λ Δ); |.| <= 1, = 1 where Δ = 0
        batch, length, _ = x.shape
        bu = torch.view_as_complex((x @ self.B_pairs.T).view(batch, length, -1, 2))  # B̃ u
        h = self.scan(lam_bar, (lam_bar - 1) / lam * bu)  # ZOH: B̄ = (Λ̄ - 1) / Λ · B̃
        if last_only:
            h, x = h[:, -1:], x[:, -1:]
        y = 2 * (torch.view_as_real(h).flatten(-2) @ self.C_pairs.T)  # 2 Re(C̃ h), (B, L, H)
        return y + self.D * x


class SelectiveSSM(nn.Module):
    """The Mamba layer: in-projection, causal conv, selective scan, SiLU gate, out-projection."""

    def __init__(
        self, d_model: int, d_state: int, d_conv: int, expand: int, dt_min: float, dt_max: float
    ) -> None:
        super().__init__()
        d_inner, self.dt_rank = expand * d_model, math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)))
        dt = (dt * dt_min).clamp(min=1e-4)
        with torch.no_grad():  # Mamba's init: softplus(bias) spans [dt_min, dt_max]
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        a_init = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a_init))  # A = -exp(A_log), S4D-real init
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.d_state = d_state
        self.keep_states: bool | None = None  # scan option; `recsys bench eval` sets True

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x (B, L, H), mask (B, L) -> (B, L, H); with last_only the last position, (B, 1, H)."""
        keep = mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
        u, gate = self.in_proj(x * keep).chunk(2, dim=-1)  # (B, L, Di) each
        u = self.conv(u.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)  # causal
        u = F.silu(u)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt)) * keep  # (B, L, Di); 0 at padding
        y = selective_scan(
            u, delta, -torch.exp(self.A_log), B, C, self.D,
            keep_states=self.keep_states, last_only=last_only,
        )  # fmt: skip
        if last_only:
            gate, keep = gate[:, -1:], keep[:, -1:]
        return self.out_proj(y * F.silu(gate)) * keep
