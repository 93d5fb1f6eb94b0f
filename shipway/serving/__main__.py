"""``python -m shipway.serving``: see :mod:`shipway.serving.cli`.

Logs, the request log and spans are flushed by the app's shutdown before ``main``
returns; the process then leaves with ``os._exit`` because tearing down the interpreter
(garbage-collecting MLflow, pandas and sklearn) takes seconds on a busy machine, and a
deployer waiting on SIGTERM should not pay for that.
"""

import os
import sys

from shipway.serving.cli import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
