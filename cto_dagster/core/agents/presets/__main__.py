"""`python -m cto_dagster.core.agents.presets npm|pypi`: the pinned install specs (for
scripts/install-agent-clis and the Dockerfile)."""

import sys

from cto_dagster.core.agents.presets import install_specs

print(" ".join(install_specs(sys.argv[1] if len(sys.argv) > 1 else "npm")))
