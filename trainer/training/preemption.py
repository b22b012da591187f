"""Stopping cleanly on SIGTERM (preemption) and Ctrl-C.

Preemptible VMs and TPU VMs announce preemption with SIGTERM. While a
`PreemptionWatcher` is active, SIGTERM and a first SIGINT only set a flag;
the run checks it between steps, saves a checkpoint and stops with
`Preempted`, whose exit status tells the shell (and a job scheduler) that a
rerun resumes.
"""

import signal

from absl import logging

# Exit status of a run stopped by SIGTERM after saving (EX_TEMPFAIL: "try
# again"); rerunning the same command resumes.
EXIT_PREEMPTED = 75
# Exit status of a run stopped by Ctrl-C (SIGINT) after saving, as shells
# report a process ended by SIGINT: 128 + 2.
EXIT_INTERRUPTED = 130
_EXIT_STATUS = {'SIGTERM': EXIT_PREEMPTED, 'SIGINT': EXIT_INTERRUPTED}


class Preempted(Exception):
  """SIGTERM or SIGINT arrived; a checkpoint was saved and the run stopped.

  Attributes:
    exit_status: EXIT_PREEMPTED after SIGTERM, EXIT_INTERRUPTED after SIGINT.
  """

  def __init__(self, message: str, exit_status: int = EXIT_PREEMPTED):
    super().__init__(message)
    self.exit_status = exit_status


class PreemptionWatcher:
  """Turns SIGTERM and a first SIGINT (Ctrl-C) into a flag checked between
  steps, while active. A second SIGINT stops at once (KeyboardInterrupt)."""

  def __init__(self):
    self.requested = False
    self.signal_name = None  # of the first signal
    self._previous = {}

  def _handle(self, signum, frame):
    """Sets the flag; a second SIGINT raises KeyboardInterrupt."""
    del frame
    name = signal.Signals(signum).name
    if self.requested and name == 'SIGINT':
      raise KeyboardInterrupt  # the second Ctrl-C
    if not self.requested:
      self.signal_name = name
      logging.warning(
          '%s: saving a checkpoint after this step, then stopping (exit '
          'status %d)%s.', name, _EXIT_STATUS[name],
          '; Ctrl-C again stops at once' if name == 'SIGINT' else '')
    self.requested = True

  @property
  def exit_status(self) -> int:
    return _EXIT_STATUS[self.signal_name or 'SIGTERM']

  def __enter__(self):
    for signum in (signal.SIGTERM, signal.SIGINT):
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
