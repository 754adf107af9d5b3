"""Request bodies of the model server, validated by pydantic (a 422 names the field and the problem)."""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..segment.propagate import PropagationConfig

Sha256 = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the volume payload (vfmlab.client.wire)")
Axis = Literal["axial", "coronal", "sagittal"]
PROPAGATION_PRESETS = {"default": PropagationConfig, "plain": PropagationConfig.plain, "v1": PropagationConfig.v1}
MAX_POINTS = 256
MAX_SEEDS = 512  # prompted slices of one propagation


class PromptOnSlice(BaseModel):
    """A prompt on one slice: pixel box ``(x0, y0, x1, y1)`` and points ``(x, y)`` in the slice as
    :class:`vfmlab.slices.SliceStack` shows it (x = column, y = row)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    box: tuple[float, float, float, float] | None = None
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=MAX_POINTS)
    labels: list[Literal[0, 1]] = Field(default_factory=list, max_length=MAX_POINTS)

    @model_validator(mode="after")
    def _complete(self) -> "PromptOnSlice":
        if len(self.points) != len(self.labels):
            raise ValueError(f"{len(self.points)} points but {len(self.labels)} labels")
        if self.box is None and not self.points:
            raise ValueError("a prompt needs a box or at least one point")
        return self

    def prompt(self):
        from ..segment.segmenter import Prompt

        return Prompt(self.box, self.points or [], self.labels or [])


class SlicePromptRequest(PromptOnSlice):
    """A prompt on one slice of a volume the server holds."""

    model: str = Field(min_length=1, max_length=200)
    volume: str = Sha256
    axis: Axis


class PropagationRequest(SlicePromptRequest):
    """A seed prompt, and optionally ``seeds`` on other slices of the same axis (one segment, e.g. prompted at
    its key slices), propagated slice by slice; ``rules`` overrides fields of the preset's PropagationConfig."""

    seeds: list[PromptOnSlice] = Field(default_factory=list, max_length=MAX_SEEDS)
    preset: Literal["default", "plain", "v1"] = "default"
    rules: dict[str, Any] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, rules: dict[str, Any]) -> dict[str, Any]:
        known = {field.name for field in fields(PropagationConfig)}
        unknown = sorted(set(rules) - known)
        if unknown:
            raise ValueError(f"unknown propagation rules {unknown}; known: {sorted(known)}")
        return rules

    @model_validator(mode="after")
    def _one_prompt_per_slice(self) -> "PropagationRequest":
        indices = [self.index] + [seed.index for seed in self.seeds]
        if len(set(indices)) != len(indices):
            raise ValueError(f"two prompts on one slice ({sorted(indices)}); give one prompt per slice")
        return self

    def prompts(self) -> dict:
        """``{slice index: Prompt}``: the seed prompt and the further seeds."""
        return {prompt.index: prompt.prompt() for prompt in (self, *self.seeds)}

    def config(self) -> PropagationConfig:
        rules = {key: tuple(value) if isinstance(value, list) else value for key, value in self.rules.items()}
        return replace(PROPAGATION_PRESETS[self.preset](), **rules)


class EncodingRequest(BaseModel):
    """Encode slices ahead (all of the axis when ``indices`` is omitted) so that prompts there answer at once."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    volume: str = Sha256
    axis: Axis
    indices: list[int] | None = Field(default=None, max_length=100_000)


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


class MetricsRequest(BaseModel):
    """Two masks the server holds as volumes (sent like any volume: nonzero = inside), on one grid."""

    model_config = ConfigDict(extra="forbid")

    prediction: str = Sha256
    reference: str = Sha256
