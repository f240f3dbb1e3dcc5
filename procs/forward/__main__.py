"""`python -m procs.forward`: the forward stage's process (the stage is the package's module)."""

from procs import stage
from procs.forward import Forward

stage.main(Forward)
