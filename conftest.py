import os

# Notebook kernels started by nbval inherit this: no progress bars in outputs.
os.environ["KDLAB_PROGRESS"] = "0"
os.environ.pop("MPLBACKEND", None)
