"""Group-sequential testing over the daily looks: alpha spending, boundaries, repeated p-values.

Why group-sequential and not confidence sequences: the horizon is known (20 days) and looks
come in batches (one per day), which is the case Lan-DeMets alpha spending is built for; it
spends little alpha early and keeps almost all of the fixed-sample power at the last look,
where confidence sequences (Waudby-Smith et al. 2021; GrowthBook, Eppo), valid for unlimited
continuous peeking, pay for that generality with wider intervals. See ../shared/
AB_STATISTICS.md: "Group-sequential with Lan-DeMets α·t^ρ spending (Spotify `confidence`)".

The design (Lan & DeMets 1983; Jennison & Turnbull, *Group Sequential Methods*, 2000):
- look k at calendar time t_k = k / n_days spends α(t_k) - α(t_{k-1}) of the two-sided α,
  α(t) = α·t^ρ ("power", ρ = 3 is O'Brien-Fleming-like) or the Lan-DeMets O'Brien-Fleming
  function α(t) = 2 - 2Φ(z_{α/2} / √t) ("obf");
- the statistics Z_k are treated as the canonical joint distribution of a Brownian motion
  observed at information I_k = cumulative users (Corr(Z_j, Z_k) = √(I_j / I_k)); the
  boundaries c_k solve P(|Z_k| ≥ c_k, no earlier crossing) = the alpha spent at k, by the
  recursive numerical integration of Armitage, McPherson & Rowe (1969) on a grid;
- repeated p-value at look k (Jennison & Turnbull §9.3): the smallest α' whose boundaries
  were crossed at some look ≤ k. It never increases, and P(it ever falls to ≤ α) ≤ α under
  the null, so Holm on repeated p-values across metrics keeps the family-wise error under
  daily peeking;
- repeated confidence interval: estimate ± c_k·SE, valid simultaneously over all looks.
The A/A false-positive rate of this procedure over 20 looks, and the inflation of naive daily
t-tests, are measured by simulation in tests/test_abtest_sequential.py.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import stats as sps
from scipy.special import ndtr

MIN_GRID, MAX_GRID = 101, 401  # Simpson grid points per look (odd)
MIN_STEP = 0.02  # a look adds at least 2 % information (see monotone_info)
_BISECTIONS, _C_MAX = 36, 15.0  # c in [0, 15] to ~2e-10 (alpha spent at 15 SD: ~1e-50)
# repeated p-values: boundaries tabulated at these α' levels, interpolated in (c, log α')
_P_GRID = np.exp(np.linspace(np.log(1e-9), 0.0, 41))  # increasing
_TAIL_SD = 9.0  # where no alpha is spent, integrate the continuation density to ±9 SD


def spent_alpha(t: np.ndarray, alpha: float, spending: str, rho: float) -> np.ndarray:
    """Cumulative two-sided alpha spent by information/calendar fraction t (clipped to 1)."""
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    if spending == "power":
        return alpha * t**rho
    if spending == "obf":
        with np.errstate(divide="ignore"):
            z = sps.norm.isf(alpha / 2) / np.sqrt(t)
        return 2 * sps.norm.sf(z)
    raise ValueError(f"unknown spending function {spending!r} (choose power or obf)")


def _simpson_weights(n: int) -> np.ndarray:
    """Composite Simpson weights for n (odd) equally spaced points over a unit width."""
    w = np.ones(n)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w / (3 * (n - 1))


class _Recursion:
    """Density of the score S_k = Z_k √I_k on the continuation region, look by look.

    Vectorised over A designs at once (one per alpha level): grids and masses are (A, G).
    """

    def __init__(self, n_designs: int, drift: float = 0.0):
        self.drift = drift  # mean of S_k is drift * I_k (drift = effect / SE at unit info)
        self.grid = np.zeros((n_designs, 0))  # (A, G) score values
        self.mass = np.zeros((n_designs, 0))  # (A, G) density x Simpson weight
        self.info = 0.0

    def cross_prob(self, c: np.ndarray, info: float) -> np.ndarray:
        """(A,) P(|S| ≥ c √info at this look and no earlier crossing)."""
        b, step = c[:, None] * np.sqrt(info), info - self.info  # b: (A, 1)
        if self.grid.shape[1] == 0:  # first look: S ~ N(drift·info, info)
            mean, sd = self.drift * info, np.sqrt(info)
            return (ndtr((mean - b) / sd) + ndtr((-b - mean) / sd))[:, 0]
        mean, sd = self.drift * step, np.sqrt(step)
        upper = ndtr((self.grid + mean - b) / sd)  # (A, G)
        lower = ndtr((-b - self.grid - mean) / sd)
        return np.sum(self.mass * (upper + lower), axis=1)

    def advance(self, c: np.ndarray, info: float) -> None:
        """Move the continuation density to this look, truncated to |S| < c √info."""
        step = info - self.info
        half = np.minimum(c, _TAIL_SD + abs(self.drift) * np.sqrt(info)) * np.sqrt(info)  # (A,)
        # at least 3 grid points per kernel SD, so short steps between looks stay accurate
        n_points = int(np.clip(6 * half.max() / np.sqrt(step), MIN_GRID, MAX_GRID)) | 1
        grid = half[:, None] * np.linspace(-1.0, 1.0, n_points)[None, :]  # (A, G)
        if self.grid.shape[1] == 0:
            density = _normal_pdf((grid - self.drift * info) / np.sqrt(info)) / np.sqrt(info)
        else:
            sd = np.sqrt(step)
            gaps = grid[:, :, None] - self.grid[:, None, :] - self.drift * step  # (A, G, G')
            density = np.einsum("agh,ah->ag", _normal_pdf(gaps / sd), self.mass) / sd
        self.grid, self.info = grid, info
        self.mass = density * (2 * half[:, None]) * _simpson_weights(n_points)[None, :]


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    """Standard normal density."""
    return np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def monotone_info(info: np.ndarray) -> np.ndarray:
    """Information levels, each look at least MIN_STEP (relative) above the one before.

    A day that adds (almost) no new users still changes returning users' means; counting it
    as a small step only lowers the modelled correlation between looks, which makes the
    boundaries more conservative, never less, and keeps the numerical integration stable.
    """
    out = np.maximum(np.asarray(info, dtype=float), 1e-12)
    for k in range(1, out.size):
        out[k] = max(out[k], out[k - 1] * (1 + MIN_STEP))
    return out


def _solve_boundary(recursion: _Recursion, target: np.ndarray, info: float) -> np.ndarray:
    """(A,) c with cross_prob(c) = target by bisection; inf where nothing can be spent."""
    spendable = (target > 1e-15) & (recursion.cross_prob(np.zeros_like(target), info) > target)
    lo, hi = np.zeros_like(target), np.full_like(target, _C_MAX)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        too_loose = recursion.cross_prob(mid, info) > target  # crossing more than allowed
        lo, hi = np.where(too_loose, mid, lo), np.where(too_loose, hi, mid)
    return np.where(spendable, (lo + hi) / 2, np.inf)


def boundary_table(
    info: np.ndarray, spend_times: np.ndarray, alphas: np.ndarray, spending: str, rho: float
) -> np.ndarray:
    """(A, K) two-sided z boundaries for each alpha level (rows) and look (columns)."""
    info, alphas = monotone_info(info), np.atleast_1d(np.asarray(alphas, dtype=float))
    spent = spent_alpha(np.asarray(spend_times)[None, :], alphas[:, None], spending, rho)
    increments = np.diff(spent, axis=1, prepend=0.0)  # (A, K)
    recursion, table = _Recursion(alphas.size), np.full((alphas.size, info.size), np.inf)
    for k, level in enumerate(info):
        table[:, k] = _solve_boundary(recursion, increments[:, k], level)
        recursion.advance(table[:, k], level)
    return table


def boundaries(
    info: np.ndarray, spend_times: np.ndarray, alpha: float, spending: str, rho: float
) -> np.ndarray:
    """(K,) two-sided z boundaries c_k (inf where no alpha is spent) for looks at these infos."""
    return boundary_table(info, spend_times, np.array([alpha]), spending, rho)[0]


def crossing_probability(info: np.ndarray, bounds: np.ndarray, drift: float) -> float:
    """P(|Z_k| ≥ c_k at some look) when the score drifts by `drift` per unit of information."""
    recursion, total = _Recursion(1, drift), 0.0
    for level, c in zip(monotone_info(info), bounds, strict=True):
        c_vec = np.array([c])
        if np.isfinite(c):
            total += float(recursion.cross_prob(c_vec, level)[0])
        recursion.advance(c_vec, level)
    return total


def detectable_z(info: np.ndarray, bounds: np.ndarray, power: float) -> float:
    """E[Z] at the last look that the boundaries cross with probability `power` by then.

    The minimum detectable effect of a metric is this times its standard error at the last
    look (Jennison & Turnbull ch. 2: a drift δ per unit information gives E[Z_K] = δ√I_K).
    Found by bisection on crossing_probability, which rises with the drift.
    """
    info = monotone_info(info)
    root = np.sqrt(info[-1])
    lo, hi = 0.0, 12.0
    for _ in range(22):  # to ~3e-6
        mid = (lo + hi) / 2
        if crossing_probability(info, bounds, mid / root) < power:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def repeated_p_values(
    z: np.ndarray,
    info: np.ndarray,
    spend_times: np.ndarray,
    spending: str,
    rho: float,
    exact_at: tuple[float, ...] = (),
) -> np.ndarray:
    """(M, K) repeated p-values at every look for M statistics z (M, K) observed at K looks.

    Per look: the smallest α' whose boundary at that look is ≤ |z|, from boundaries tabulated
    at log-spaced α' and interpolated in (c, log α') (relative error ~1e-3; floor 1e-9); then
    the running minimum over looks. NaN where nothing has been observed yet. At the levels
    in `exact_at` (alpha and the Holm levels alpha/m) the comparison p ≤ level is exactly the
    boundary crossing, because those levels are nodes of the table.
    """
    z_abs = np.abs(np.atleast_2d(np.asarray(z, dtype=float)))
    levels = np.unique(np.concatenate([_P_GRID, np.asarray(exact_at, dtype=float)]))
    key = (tuple(map(float, info)), tuple(map(float, spend_times)), spending, rho)
    table = _cached_table(*key, tuple(levels))  # (A, K), c falls as α' grows
    per_look = np.full(z_abs.shape, np.nan)
    for k in range(z_abs.shape[1]):
        per_look[:, k] = _invert_boundary(z_abs[:, k], table[:, k], levels)
    filled = np.where(np.isnan(per_look), np.inf, per_look)
    running = np.minimum.accumulate(filled, axis=1)
    return np.where(np.isinf(running), np.nan, running)


@functools.lru_cache(maxsize=8)
def _cached_table(info: tuple, spend: tuple, spending: str, rho: float, levels: tuple):
    """boundary_table memoised: both designs of a look share one information sequence."""
    return boundary_table(np.array(info), np.array(spend), np.array(levels), spending, rho)


def _invert_boundary(z_abs: np.ndarray, c_by_alpha: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Smallest α' with c(α') ≤ |z|, interpolating the tabulated (α', c) of one look."""
    finite = np.isfinite(c_by_alpha)
    if not finite.any():  # this look spends nothing at any level
        return np.where(np.isnan(z_abs), np.nan, 1.0)
    c, log_p = c_by_alpha[finite][::-1], np.log(levels[finite])[::-1]  # c increasing
    p = np.exp(np.interp(z_abs, c, log_p, left=0.0, right=log_p[-1]))
    p = np.where(z_abs < c[0], 1.0, p)
    return np.where(np.isnan(z_abs), np.nan, p)


def z_from_t(t: float, df: float) -> float:
    """The normal deviate with the same two-sided p-value as a t statistic (sign kept)."""
    if not (np.isfinite(t) and np.isfinite(df)):
        return float("nan")
    return float(np.sign(t) * sps.norm.isf(sps.t.sf(abs(t), df)))


def t_boundary(c: float, df: float) -> float:
    """The t-scale boundary matching a z boundary c (for repeated confidence intervals)."""
    if not np.isfinite(c):
        return float("inf")
    return float(sps.t.isf(sps.norm.sf(c), df)) if np.isfinite(df) else c
