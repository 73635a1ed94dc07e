"""``ephemerd run``: a workflow file run locally in one fresh sandbox, no forge involved."""

from ._display import ConsoleReporter
from ._runner import JobResult, RunReporter, StepOutcome, StepResult, run_job
from ._workflow import Step, Workflow, WorkflowError, WorkflowJob, load_workflow

__all__ = [
    "ConsoleReporter",
    "JobResult",
    "RunReporter",
    "Step",
    "StepOutcome",
    "StepResult",
    "Workflow",
    "WorkflowError",
    "WorkflowJob",
    "load_workflow",
    "run_job",
]
