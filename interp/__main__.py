"""``python -m interp ...`` (and ``torchrun --nproc_per_node N -m interp sae train ...``): the ``interp`` CLI."""
from .cli import main

main()
