"""The notebooks' machinery: the papermill runner, the paper's experiments, figures, plots and widgets.
"""
