"""Re-export of :mod:`hooks.plot_style` (the shared plotting style lives in the bottom layer so
``saes`` and ``steering`` use it too).

    from interp.plot_style import figure, layer_axis, title_for, legend_outside, save_figure, format_q
"""
from hooks.plot_style import *  # noqa: F401,F403
from hooks.plot_style import __all__  # noqa: F401
