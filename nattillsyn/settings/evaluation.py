"""Settings of evaluation reports (`nattillsyn report`, the evaluator api)."""

from pydantic import Field

from .base import Section


class EvaluationSettings(Section):
    minutes_per_visit: float = Field(
        5.0,
        description="Staff minutes one physical night visit takes (walk, door, look, note); "
        "used for minutes saved and for visits without an end time. About 10 in home care, "
        "where staff travel between homes.",
        gt=0,
        le=120,
    )
    awakening_window_min: float = Field(
        15.0,
        description="Activity starting within this many minutes after a check counts as an "
        "awakening after it.",
        gt=0,
        le=120,
    )
    k_anonymity: int = Field(
        5,
        description="Smallest number of residents behind any figure an evaluator sees; "
        "smaller cells are suppressed.",
        ge=2,
        le=100,
    )
    bootstrap_samples: int = Field(
        2000, description="Bootstrap resamples for confidence intervals.", ge=100, le=100_000
    )
    confidence: float = Field(
        0.95, description="Confidence level of the intervals.", gt=0.5, lt=1.0
    )
    bootstrap_seed: int = Field(
        20240901, description="Seed of the bootstrap, so a report can be reproduced.", ge=0
    )
    refresh_lookback_h: float = Field(
        48.0,
        description="Telemetry this many hours older than the last refresh is re-read (late "
        "data buffered by a gateway).",
        ge=0,
        le=24 * 90,
    )
