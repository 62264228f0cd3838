"""Request and response bodies of the job server (they make the OpenAPI page at ``/docs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["queued", "running", "done", "failed", "cancelled"]


class JobRequest(BaseModel):
    """A job: a workflow document with optional overrides and targets."""

    model_config = ConfigDict(extra="forbid")
    workflow: dict[str, Any] = Field(description="A nodegen workflow document (or a ComfyUI one)")
    set: dict[str, Any] | None = Field(
        None, description='Overrides: {"NODE.INPUT": value}, NODE a node id or a unique title (as run --set)')
    targets: list[str] | None = Field(None, description="Run only what these nodes need (ids or titles)")


class JobAccepted(BaseModel):
    id: str
    status: Status


class Job(BaseModel):
    id: str
    status: Status
    set: dict[str, Any]
    targets: list[str] | None = None
    submitted: float
    started: float | None = None
    finished: float | None = None
    attempts: int
    error: str | None = None
    files: list[str] = Field(description="Output files, relative to the job's folder")
    seconds: float | None = None
    timings: dict[str, float] = Field(description="Seconds per node that ran")
    problems: list[str] = []


class JobList(BaseModel):
    jobs: list[Job]
    counts: dict[str, int]


class ResultFile(BaseModel):
    name: str
    url: str
    values: dict[str, Any] | None = Field(None, description="The provenance embedded in the PNG")


class Results(BaseModel):
    id: str
    status: Status
    files: list[ResultFile]


class Problem(BaseModel):
    node_id: str | None = None
    node_title: str | None = None
    input: str | None = None
    code: str
    message: str
    severity: str = "error"


class ValidateResult(BaseModel):
    valid: bool
    problems: list[Problem]
    warnings: list[Problem]


class ErrorBody(BaseModel):
    error: str = Field(description="What is wrong, in words")
    field: str | None = Field(None, description="The request field at fault (dotted path)")
    problems: list[Any] | None = None


class Health(BaseModel):
    ok: bool
    version: str
    counts: dict[str, int]
    running: str | None = None
