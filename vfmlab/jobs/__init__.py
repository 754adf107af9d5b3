"""Background jobs: tasks run in a subprocess that reports JSON-lines events (see ``events``).

Start one with :meth:`Job.start`, poll it from a timer, cancel it as a whole process tree. Modules
add tasks with :func:`register_task`; the job config names the module to import.
"""
from vfmlab.jobs.events import EVENTS_FILE, JobEvent, Reporter, read_events
from vfmlab.jobs.registry import TaskFn, get_task, known_tasks, register_task
from vfmlab.jobs.runner import CONFIG_FILE, LOG_FILE, Job, JobState
from vfmlab.jobs import builtin  # noqa: F401,E402  (registers the built-in tasks)

__all__ = [
    "CONFIG_FILE",
    "EVENTS_FILE",
    "LOG_FILE",
    "Job",
    "JobEvent",
    "JobState",
    "Reporter",
    "TaskFn",
    "get_task",
    "known_tasks",
    "read_events",
    "register_task",
]
