"""Typed params: params.yaml loaded into pydantic models, one section per stage.

params.yaml is the only place hyper-parameters live. Presets under configs/ are partial
overlays; `recsys preset NAME` merges one into params.yaml, so nothing reads configs/ behind
DVC's back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML

from recsys.errors import RecsysError
from recsys.io import atomic_path

DATASETS = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m")
PARAMS_FILE = Path("params.yaml")
PRESETS_DIR = Path("configs")


class Section(BaseModel):
    """A params section: unknown keys and wrong types are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataParams(Section):
    """Which dataset the pipeline runs on: `data/<dataset>/ratings.csv`."""

    dataset: str = Field(default="ml-100k", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SplitParams(Section):
    """Global temporal split: oldest rows train, then val, newest test (fractions of rows)."""

    val_frac: float = Field(default=0.1, gt=0, lt=1)
    test_frac: float = Field(default=0.1, gt=0, lt=1)
    # k-core on the training rows only (iterated to a fixed point); 1 keeps every row.
    min_user_ratings: int = Field(default=1, ge=1)
    min_item_ratings: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _leave_train_rows(self) -> SplitParams:
        if self.val_frac + self.test_frac >= 1:
            raise ValueError("val_frac + test_frac must be below 1 (train needs rows)")
        return self


class EtlParams(Section):
    """Daily batches: the test split released as `n_days` equal slices, each quality-gated."""

    n_days: int = Field(default=20, ge=1, le=99)  # dvc.yaml's `vars: days` lists the same days
    # every quality metric (completeness, validity, uniqueness, consistency) must reach this
    min_quality: float = Field(default=0.95, ge=0, le=1)
    # the release's rating scale: valid ratings are min, min + step, ..., max
    rating_min: float = 0.5
    rating_max: float = 5.0
    rating_step: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _rating_scale(self) -> EtlParams:
        if self.rating_min >= self.rating_max:
            raise ValueError("rating_min must be below rating_max")
        return self


AB_METRICS = ("sq_err", "abs_err", "hit@10", "ndcg@10", "rr@10")  # per-event outcomes


class BusinessAssumptions(Section):
    """ASSUMPTIONS, not measurements: turn the hit@10 uplift into a value projection."""

    value_per_success: float = Field(default=0.05, ge=0)  # currency per hit@10 (a good rec)
    users_per_day: int = Field(default=10_000, ge=1)  # users shown recommendations per day
    recommendations_per_user: float = Field(default=5.0, gt=0)  # lists served per user per day


def pipeline_days(n_days: int = 20) -> dict[str, dict[str, str]]:
    """dvc.yaml's `vars: days`, the items of the batch@N and abtest@N foreach stages: key = day
    (a string: DVC drops integer keys of a foreach mapping), nn = zero-padded, prev = what
    abtest@N chains on (day N-1's result; day 1 its own batch)."""
    days = {"1": {"nn": "01", "prev": "batches/day_01.parquet"}}
    for day in range(2, n_days + 1):
        days[str(day)] = {"nn": f"{day:02d}", "prev": f"metrics/abtest/day_{day - 1:02d}.json"}
    return days


class AbtestParams(Section):
    """A/B comparison of model_b (treatment) against model_a (control), day by day."""

    model_a: str = "ncf"
    model_b: str = "ss4rec"
    metrics: list[str] = ["hit@10", "ndcg@10", "rr@10"]  # success metrics: the Holm family
    primary_metric: str = "ndcg@10"
    # guardrails (not in the Holm family): metric -> non-inferiority margin relative to A's mean
    guardrails: dict[str, float] = {"sq_err": 0.05}
    unit: Literal["user", "event"] = "user"  # primary unit of the decision (both are reported)
    target_lift: float = Field(default=0.05, gt=0)  # relative lift the power figures aim at
    power: float = Field(default=0.8, gt=0, lt=1)  # power of the MDE
    bootstrap_min_users: int = Field(default=20, ge=2)  # fewer users (per arm): no bootstrap
    segments: list[Literal["history", "activity"]] = ["history", "activity"]  # exploratory
    # the same models trained with other seeds (prediction files; empty: one checkpoint each)
    seed_predictions_a: list[str] = []
    seed_predictions_b: list[str] = []
    alpha: float = Field(default=0.05, gt=0, lt=1)
    n_days: int = Field(default=20, ge=1)
    n_bootstrap: int = Field(default=2000, ge=100)
    n_permutations: int = Field(default=2000, ge=100)
    seed: int = 0
    salt: str = "abtest-2026"  # user -> arm hash salt; a new salt is a new randomisation
    share_b: float = Field(default=0.5, gt=0, lt=1)  # designed share of users in arm B
    spending: Literal["power", "obf"] = "power"  # alpha spending: α·t^ρ or Lan-DeMets OBF
    rho: float = Field(default=3.0, gt=0)  # exponent of the power spending function
    decision_design: Literal["paired", "randomised"] = "paired"
    business: BusinessAssumptions = BusinessAssumptions()

    @model_validator(mode="after")
    def _known_metrics(self) -> AbtestParams:
        unknown = [m for m in self.metrics if m not in AB_METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of {list(AB_METRICS)}")
        if self.primary_metric not in self.metrics:
            raise ValueError("primary_metric must be one of metrics")
        bad = [m for m in self.guardrails if m not in AB_METRICS or m in self.metrics]
        if bad or any(margin < 0 for margin in self.guardrails.values()):
            raise ValueError(
                f"guardrails: metrics of {list(AB_METRICS)} not in metrics, margins >= 0"
            )
        return self


class TrainParams(Section):
    """What every model's training and evaluation share; model hyper-parameters (lr,
    batch_size, epochs, dims) live in the model's own section."""

    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "auto"
    amp: bool = False  # bf16 autocast on CUDA; a no-op (with a note) on CPU
    compile: bool = False  # torch.compile of the loss on CUDA; a no-op (with a note) on CPU
    num_threads: int = Field(default=2, ge=0)  # torch CPU threads; 0 = torch's default
    patience: int = Field(default=3, ge=1)  # epochs without improvement before stopping
    early_stop_metric: str = Field(
        default="val/ndcg@10", pattern=r"^val/(rmse|mae|hr@10|ndcg@10|mrr@10)$"
    )
    early_stop_mode: Literal["max", "min"] = "max"
    max_grad_norm: float = Field(default=0.0, ge=0)  # gradient clipping; 0 = off (norm is logged)
    max_len: int = Field(default=50, ge=1)  # history length of queries, unless the model sets one
    eval_batch_size: int = Field(default=1024, ge=1)
    # sequence models: training windows start every window_stride_frac * max_len events, so a
    # target sees at least (1 - frac) * max_len + 1 history events (1.0: no overlap)
    window_stride_frac: float = Field(default=0.5, gt=0, le=1)


class BiasParams(Section):
    """User + item bias baseline: ridge-regularised biases by alternating updates."""

    reg_user: float = Field(default=10.0, ge=0)
    reg_item: float = Field(default=2.0, ge=0)
    iterations: int = Field(default=10, ge=1)


class MeanParams(Section):
    """Global-mean baseline: nothing to set."""


class MarkovParams(Section):
    """First-order transition counter: history window it reads (only the newest event)."""

    max_len: int = Field(default=1, ge=1)  # the newest history event is all it uses


class NCFParams(Section):
    """NeuMF (He et al. 2017): GMF and MLP towers fused; a rating head and a ranking head."""

    gmf_dim: int = Field(default=32, ge=1)  # GMF user/item embedding size
    mlp_dim: int = Field(default=32, ge=1)  # MLP tower user/item embedding size
    mlp_layers: list[int] = Field(default=[64, 32, 16], min_length=1)  # hidden widths
    dropout: float = Field(default=0.1, ge=0, lt=1)
    rank_weight: float = Field(default=0.5, ge=0)  # weight of the ranking (BCE) loss
    n_negatives: int = Field(default=4, ge=1)  # sampled negatives per positive (ranking head)
    unknown_prob: float = Field(default=0.05, ge=0, lt=1)  # ids replaced by 0 in training
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=1024, ge=1)
    epochs: int = Field(default=30, ge=1)


class SS4RecParams(Section):
    """SS4Rec (arXiv:2502.08132); defaults follow the official code except where noted."""

    d_model: int = Field(default=64, ge=2)  # hidden size
    n_layers: int = Field(default=2, ge=1)  # SSBlocks
    d_state: int = Field(default=32, ge=2, multiple_of=2)  # S5 and Mamba state size
    d_conv: int = Field(default=4, ge=1)  # Mamba causal conv width
    expand: int = Field(default=2, ge=1)  # Mamba inner width = expand * d_model
    # S5's initial step range; Mamba keeps its own 0.001-0.1 (as in the official code)
    dt_min: float = Field(default=0.001, gt=0)
    dt_max: float = Field(default=0.1, gt=0)
    gap_unit_days: float = Field(default=1 / 24, gt=0)  # time gaps are log1p(days / unit)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    rating_weight: float = Field(default=1.0, ge=0)  # loss = next-item CE + w * rating MSE
    use_rating_input: bool = True  # add each history event's rating to its input
    # ablations: no_time = S5 steps of 1 (blind to gaps); s5_only / mamba_only drop a layer
    variant: Literal["full", "no_time", "s5_only", "mamba_only"] = "full"
    max_len: int = Field(default=50, ge=1)  # training window / history length (200: ml-1m)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=256, ge=1)  # windows of max_len events per step
    epochs: int = Field(default=20, ge=1)


class SASRecParams(Section):
    """SASRec (Kang & McAuley 2018): causal self-attention over the history window."""

    d_model: int = Field(default=64, ge=2)  # hidden size (item and position embeddings)
    n_layers: int = Field(default=2, ge=1)  # self-attention blocks
    n_heads: int = Field(default=2, ge=1)  # attention heads; must divide d_model
    dropout: float = Field(default=0.2, ge=0, lt=1)
    max_len: int = Field(default=50, ge=1)  # training window / history length (positions)
    use_rating_input: bool = True  # add an embedding of the centred history rating
    rating_weight: float = Field(default=1.0, ge=0)  # loss = next-item CE + w * rating MSE
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=256, ge=1)  # windows of max_len events per step
    epochs: int = Field(default=15, ge=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> SASRecParams:
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        return self


class FlowsParams(Section):
    """Limits of the Prefect flows (no stage reads them: a change here stales nothing)."""

    # one `dvc repro <stage>` task (or an experiment queue): past it DVC is stopped, the task fails
    stage_timeout_s: int = Field(default=7200, ge=1)
    # a task that reads DVC's state, shows metrics or pushes
    read_timeout_s: int = Field(default=600, ge=1)
    # wait for the repository lock another flow or `recsys etl` holds, then fail naming it
    lock_timeout_s: int = Field(default=1800, ge=0)


class Params(Section):
    """All of params.yaml."""

    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    etl: EtlParams = EtlParams()
    abtest: AbtestParams = AbtestParams()
    train: TrainParams = TrainParams()
    bias: BiasParams = BiasParams()
    ncf: NCFParams = NCFParams()
    ss4rec: SS4RecParams = SS4RecParams()
    sasrec: SASRecParams = SASRecParams()
    flows: FlowsParams = FlowsParams()


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against params.yaml's sections)"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Validate a params mapping; a bad key or type is a one-line RecsysError naming it."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise RecsysError(_one_line(err, source)) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a syntax error is a one-line RecsysError."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecsysError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecsysError(f"{path}:{where} is not valid YAML: {err}".splitlines()[0]) from None
    if data is not None and not isinstance(data, dict):
        raise RecsysError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data or {}


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Load and validate params.yaml."""
    path = Path(path)
    return parse_params(read_yaml(path), source=str(path))


def merge_into(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    """Merge `overlay` into `base` in place, recursing into nested mappings."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = value


def list_presets(presets_dir: Path = PRESETS_DIR) -> list[str]:
    """Names of the presets under configs/ (`default` is built in)."""
    names = {p.stem for p in presets_dir.glob("*.yaml") if p.stem != "prefect"}
    return sorted(names | {"default"})


def apply_preset(
    name: str, params_path: Path = PARAMS_FILE, presets_dir: Path = PRESETS_DIR
) -> Params:
    """Merge configs/<name>.yaml into params.yaml (`default` resets it), keeping comments."""
    if name == "default":
        overlay: dict[str, Any] = Params().model_dump(mode="json")
    else:
        preset = presets_dir / f"{name}.yaml"
        if not preset.is_file():
            choices = ", ".join(list_presets(presets_dir))
            raise RecsysError(f"no preset {name!r} in {presets_dir}/ (choose from: {choices})")
        overlay = read_yaml(preset)
    rt = YAML()  # round-trip mode: params.yaml keeps its comments and key order
    document = rt.load(params_path.read_text(encoding="utf-8")) if params_path.exists() else {}
    merge_into(document, overlay)
    params = parse_params(document, source=f"params.yaml + preset {name}")
    with atomic_path(params_path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        rt.dump(document, fh)
    return params
