"""On-demand benchmarks of Shipway against the tools a user would pick instead.

Run with ``python -m benchmarks.run [--quick]`` (``make bench``); results go to
``benchmarks/RESULTS.md``. Nothing here asserts a timing: speed is measured on demand and
reported as medians and ratios against a reference tool run on the same machine in the same run.
"""

from shipway_core import vendor_telemetry

# The benchmarks start MLflow servers and clients: no usage reports leave the machine.
vendor_telemetry.switch_off()

