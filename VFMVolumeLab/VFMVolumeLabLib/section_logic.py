"""What the logic of every panel section shares: the scene, and the jobs it follows by name.

A section's logic owns its jobs (the widget never holds a job): ``follow(name, start, ...)`` starts one
(a :class:`vfmlab.client.jobs.ServerJob` on the model server) and polls it on a timer; ``cleanup()`` stops
following. Jobs on the server keep running when a panel goes away (a training run's folder records it,
and Resume picks it up again); a section that must stop its work cancels it in its own cleanup.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from vfmlab.errors import InputError

from VFMVolumeLabLib.job_follower import JobFollower, qt_timer


class SectionLogic:
    def __init__(self, scene, timer_factory: Optional[Callable] = None):
        self.scene = scene
        self.timer_factory = qt_timer if timer_factory is None else timer_factory
        self.followers: dict[str, JobFollower] = {}

    def running(self, name: str) -> bool:
        follower = self.followers.get(name)
        return follower is not None and follower.is_running

    def follow(self, name: str, start: Callable[[], Any], **callbacks) -> JobFollower:
        """Start a job with ``start()`` and follow it as ``name``; ``callbacks``: ``on_progress``, ``on_event``,
        ``on_done`` of :class:`JobFollower`. A second job of the same name while one runs is refused."""
        if self.running(name):
            raise InputError(f"the {name} job is still running; wait for it or cancel it")
        follower = JobFollower(start, timer_factory=self.timer_factory, **callbacks)
        follower.start()  # raises before registering: a job that did not start is not followed
        self.followers[name] = follower
        return follower

    def cancel(self, name: str) -> None:
        follower = self.followers.get(name)
        if follower is not None:
            follower.cancel()

    def cleanup(self) -> None:
        """Stop following every job (their timers stop; the jobs themselves go on on the server)."""
        for follower in self.followers.values():
            follower.detach()
        self.followers.clear()
