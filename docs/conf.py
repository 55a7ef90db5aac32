"""Sphinx configuration of the skvae documentation.

Build with ``python -m sphinx -W --keep-going -n -b html docs docs/_build/html``
(the command README.md and ``.ci/run`` use). ``-n`` makes every unresolved
cross-reference a warning and ``-W`` turns warnings into errors, so a broken
reference fails the build. The example gallery is executed; set
``SKVAE_DOCS_PLOT_GALLERY=0`` to skip executing it for a quick build.
"""

import os
import re
import sys
import warnings
from pathlib import Path

# sphinx-gallery resolves the names an example uses, and
# sklearn.model_selection.HalvingRandomSearchCV raises ImportError until this
# import has run (the halving example does it itself, but after the resolution)
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.experimental import enable_iterative_imputer  # noqa: F401

import skvae

sys.path.insert(0, str(Path(__file__).parent))

project = "skvae"
author = "skvae developers"
copyright = "2026, skvae developers"
release = skvae.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip"]
html_theme = "pydata_sphinx_theme"
html_title = f"skvae {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}

# API reference: one page per public object, generated from the docstrings.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True,
                           "undoc-members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Attributes are listed with the text of the class docstring, not replaced by
# the summary of an inherited property (scikit-learn's link into its glossary)
numpydoc_attributes_as_param_list = False
# Types written in scikit-learn's words ("array-like of shape (n, m)") are
# linked where they name a real object and left as text otherwise.
numpydoc_xref_param_type = False
numpydoc_xref_aliases = {
    "BaseEstimator": "sklearn.base.BaseEstimator",
    "DataFrame": "pandas.DataFrame",
    "Figure": "matplotlib.figure.Figure",
    "Axes": "matplotlib.axes.Axes",
    "RandomState": "numpy.random.RandomState",
    "Generator": "numpy.random.Generator",
    "Module": "torch.nn.Module",
    "History": "skorch.history.History",
    "Callback": "skorch.callbacks.Callback",
}
numpydoc_xref_ignore = {
    "of", "shape", "default", "or", "and", "optional", "array-like", "sparse",
    "matrix", "n_samples", "n_features", "n_components", "int", "float", "bool",
    "str", "dict", "list", "tuple", "callable", "None", "instance", "object",
    "sequence", "iterable", "estimator", "scipy.stats", "distribution",
    "distributions", "n_images", "n_steps", "n_dims", "n_importance_samples",
    "{array-like", "matrix}", "1", "2", "any", "length", "pair", "ints", "strs",
    "floats", "values", "same", "as", "in", "with", "the", "a", "an",
}

# Builds run where only the package registries are reachable, so there is no
# intersphinx: references to other projects' objects render as code, and a
# reference to an skvae object that does not exist still fails the build.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(sklearn|numpy|np|scipy|pandas|pd|torch|skorch|matplotlib|optuna"
               r"|optuna_integration|joblib|dask|distributed|dask_ml|deap|threadpoolctl"
               r"|skops|skl2onnx|onnx|onnxruntime)"
               r"(\..*)?"),
    (r"py:.*", r"(array-like|sparse matrix|array|ndarray|DataFrame|Figure|Axes"
               r"|RandomState|Generator|Module|History|Callback|estimator|callable)"),
]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "plot_gallery": os.environ.get("SKVAE_DOCS_PLOT_GALLERY", "True"),
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "reference_url": {"skvae": None},
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "min_reported_time": 1,
}

# Fail on warnings a user would see in the gallery output, but not on the
# matplotlib "non-interactive backend" notice of plt.show() under Agg.
warnings.filterwarnings("ignore", message="FigureCanvasAgg is non-interactive")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")


_ROLE = re.compile(r":(?:ref|term):`([^`<]*?)\s*(?:<[^`>]*>)?`")
# a bare word ending in "_" (classes_) is a reST link reference
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?![`\w])")


def _unlink_sklearn_docstring(app, what, name, obj, options, lines):
    """Methods inherited from scikit-learn (``set_output``, ``set_params``,
    metadata routing) link to labels of scikit-learn's own documentation; keep
    their text and drop the links, which cannot resolve here."""
    module = getattr(getattr(obj, "fget", obj), "__module__", None) or ""
    if module.startswith("sklearn"):
        lines[:] = [_TRAILING_UNDERSCORE.sub(r"``\1``", _ROLE.sub(lambda m: m.group(1) or "", line))
                    for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _unlink_sklearn_docstring)
