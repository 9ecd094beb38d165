"""Run the `qpa` command line, SIGKILLing the process at a chosen point.

    python tests/killpoints.py POINT N qpa-arguments...

POINT is where the process dies the N-th time it gets there:
  before-submit     a submission is about to leave (the request never reaches the service)
  after-submit      the service has accepted a job; its id is not yet in the ledger
  ledger:<kind>     a ledger record of that kind is about to be written
  checkpoint        a training checkpoint is about to be written
"""

import os
import signal
import sys

from qpa_qiskit import train
from qpa_qiskit.cli import main
from qpa_qiskit.jobs import Ledger, LocalTestingJobs, RuntimeJobs


def kill_at(point: str, nth: int) -> None:
    seen = [0]

    def hit() -> None:
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    if point.startswith("ledger:"):
        kind = point.split(":", 1)[1]
        append = Ledger.append

        def ledger_append(self, record_kind, key, **fields):
            if record_kind == kind:
                hit()
            return append(self, record_kind, key, **fields)

        Ledger.append = ledger_append
    elif point == "before-submit":
        run_sampler = RuntimeJobs.run_sampler  # where every submission leaves, local or not

        def before(self, *args, **kwargs):
            hit()
            return run_sampler(self, *args, **kwargs)

        RuntimeJobs.run_sampler = before
    elif point == "after-submit":
        local_submit = LocalTestingJobs.submit

        def after(self, *args, **kwargs):
            job_id = local_submit(self, *args, **kwargs)
            hit()
            return job_id

        LocalTestingJobs.submit = after
    elif point == "checkpoint":
        save = train.Run.save

        def checkpoint(self):
            hit()
            return save(self)

        train.Run.save = checkpoint
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    kill_at(sys.argv[1], int(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
