import os

# Notebook kernels started by nbval inherit these: no progress bars in outputs, and
# inline figures (MPLBACKEND=Agg would drop them and fail the comparison).
os.environ["KDLAB_PROGRESS"] = "0"
os.environ.pop("MPLBACKEND", None)


def pytest_configure(config):
    # matplotlib announces its first font-cache build on stderr; build it before any
    # notebook kernel starts so the message never lands in a compared output.
    import matplotlib.font_manager  # noqa: F401
    # pytest-xdist's loadscope hands out the scopes with the most tests first, which sends
    # the one-test browser check (about a minute) last, to one worker while the other
    # idles. In collection order (tests/, lessons/, solutions/) the long scopes start early
    # and the short solution notebooks fill the end.
    if getattr(config.option, "loadscopereorder", None):
        config.option.loadscopereorder = False
