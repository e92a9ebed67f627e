"""How a run uses the machine: several processes (``distributed``), fusion and refinement
in a process pool (``workers``), images read ahead (``loading``), mixed precision."""
