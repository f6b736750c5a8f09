"""The public API for the team's hooks module (docs/jobs.md).

from shipyard.functions import Functions, Reject, Discard
functions = Functions()
"""

from shipyard.kernel.functions import Functions, FunctionsError, Reject
from shipyard.tools.worker import Discard

__all__ = ["Discard", "Functions", "FunctionsError", "Reject"]
