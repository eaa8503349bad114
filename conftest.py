import os

# Notebook kernels started by nbval inherit these: no progress bars in outputs, and
# inline figures (MPLBACKEND=Agg would drop them and fail the comparison).
os.environ["KDLAB_PROGRESS"] = "0"
os.environ.pop("MPLBACKEND", None)


def pytest_configure(config):
    # matplotlib announces its first font-cache build on stderr; build it before any
    # notebook kernel starts so the message never lands in a compared output.
    import matplotlib.font_manager  # noqa: F401
