"""``deployments watch``: poll a deployment until it finishes, showing a live progress bar
(and, for a phased rollout, one bar per phase: how many of its devices finished).

The loop (``follow``) takes its fetch, sleep and clock as arguments so it is tested without a
server or real time; the command wires it to the client and to rich. Ctrl-C stops watching
only: the deployment goes on on the server, and the command says so.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from otaguard.cli.manage.output import as_json, err, note
from otaguard.cli.manage.progress import (
    EXIT_INTERRUPTED,
    EXIT_TIMED_OUT,
    DeploymentProgress,
    next_delay,
    outcome,
    progress_of,
)
from otaguard.errors import OTAGuardError


class WatchTimeout(OTAGuardError):
    """`deployments watch` gave up before the deployment ended (``last``: what it saw last)."""

    code = "watch_timeout"

    def __init__(self, last: DeploymentProgress) -> None:
        super().__init__(last.summary())
        self.last = last


def follow(
    fetch: Callable[[], Mapping[str, Any]],
    on_change: Callable[[Mapping[str, Any], DeploymentProgress], None],
    *,
    interval: float,
    timeout: float | None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DeploymentProgress:
    """Poll until the deployment is finished; ``on_change`` hears every new progress.

    Raises:
        WatchTimeout: ``timeout`` seconds passed first.
    """
    deadline = None if timeout is None else clock() + timeout
    last: DeploymentProgress | None = None
    delay = interval
    while True:
        reply = fetch()
        p = progress_of(reply)
        if p != last:
            on_change(reply, p)
        if p.finished:
            return p
        delay = next_delay(delay, changed=p != last, base=interval)
        last = p
        if deadline is not None:
            left = deadline - clock()
            if left <= 0:
                raise WatchTimeout(p)
            delay = min(delay, left)
        sleep(delay)


def watch(
    fetch: Callable[[], Mapping[str, Any]],
    deployment_id: int,
    *,
    interval: float,
    timeout: float | None,
    json: bool,
) -> int:
    """Follow with a progress bar (or, with ``json``, one JSON Lines record per change); the
    exit status to end with."""
    with _ctrl_c_between_polls() as nap:
        return _watch(fetch, deployment_id, interval, timeout, json, nap)


@contextmanager
def _ctrl_c_between_polls() -> Iterator[Callable[[float], None]]:
    """Ctrl-C as a flag the loop reads between polls (its sleep raises ``KeyboardInterrupt``
    there), not an exception that may strike inside the progress bar's locks and leave its
    refresh thread waiting forever; the previous handler is back afterwards."""
    stop = threading.Event()

    def nap(delay: float) -> None:
        if stop.wait(delay):
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield time.sleep  # signals reach the main thread only: nothing to install
        return
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: stop.set())
    try:
        yield nap
    finally:
        signal.signal(signal.SIGINT, previous)


def _watch(
    fetch: Callable[[], Mapping[str, Any]],
    deployment_id: int,
    interval: float,
    timeout: float | None,
    json: bool,
    nap: Callable[[float], None],
) -> int:
    if json:

        def line(reply: Mapping[str, Any], _p: DeploymentProgress) -> None:
            as_json(reply, one_line=True)

        code, message = _run(
            lambda: follow(fetch, line, interval=interval, timeout=timeout, sleep=nap),
            deployment_id,
        )
    else:
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err) as bar:
            show = _bars(bar, deployment_id)
            code, message = _run(
                lambda: follow(fetch, show, interval=interval, timeout=timeout, sleep=nap),
                deployment_id,
            )
    note(message)
    return code


def _bars(
    bar: Progress, deployment_id: int
) -> Callable[[Mapping[str, Any], DeploymentProgress], None]:
    """What draws each change: the deployment's bar, then one bar per rollout phase."""
    task = bar.add_task(f"deployment {deployment_id}", total=None)
    phase_tasks: dict[int, TaskID] = {}

    def show(_reply: Mapping[str, Any], p: DeploymentProgress) -> None:
        rollout = f", rollout {p.rollout_status}" if p.rollout_status else ""
        text = f"deployment {deployment_id} {p.state}{rollout} ({p.failed} failed)"
        bar.update(task, total=p.total, completed=p.done, description=text)
        for i, phase in enumerate(p.phases):
            if i not in phase_tasks:
                phase_tasks[i] = bar.add_task("", total=None)
            bad = f", {phase.bad} failed/rolled back/silent" if phase.bad else ""
            bar.update(
                phase_tasks[i],
                total=phase.total,
                completed=phase.ended,
                description=f"  phase {phase.name}: {phase.label}{bad}",
            )

    return show


def _run(loop: Callable[[], DeploymentProgress], deployment_id: int) -> tuple[int, str]:
    """Run the loop; the exit status and the closing line (said after the bar is gone)."""
    try:
        note(f"watching deployment {deployment_id}; Ctrl-C stops watching, not the deployment")
        final = loop()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED, "stopped watching; the deployment goes on on the server"
    except WatchTimeout as exc:
        return EXIT_TIMED_OUT, f"gave up watching after the timeout; {exc}"
    return outcome(final), f"deployment {deployment_id} {final.summary()}"
