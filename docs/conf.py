"""Sphinx configuration of the scgmvae documentation.

Build (offline, warnings as errors)::

    cd docs && SCGMVAE_DOCS_OFFLINE=1 python -m sphinx -W --keep-going -b html . _build/html

``SCGMVAE_DOCS_OFFLINE=1`` drops the intersphinx mapping, so no inventory is fetched from the
network. The tutorial notebooks live in ``../tutorials`` and are copied into ``tutorials/`` here
at build time; they are rendered as stored (without outputs, ``nb_execution_mode = "off"``)
because the test suite executes them. ``SCGMVAE_DOCS_NB_EXECUTION=force`` (any myst-nb
execution mode) executes them during the build instead, with ``SCGMVAE_TUTORIAL_EPOCHS`` and
``SCGMVAE_DATA_DIR`` taken from the environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import warnings
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import scgmvae  # noqa: E402

# -- project -------------------------------------------------------------------------------

project = "scgmvae"
author = "scgmvae developers"
copyright = f"{datetime.now():%Y}, {author}"
version = scgmvae.__version__
release = version

# -- the tutorials: copy ../tutorials/*.ipynb into docs/tutorials/ ---------------------------


def _copy_tutorials() -> None:
    source = ROOT / "tutorials"
    target = HERE / "tutorials"
    target.mkdir(exist_ok=True)
    for old in target.glob("*.ipynb"):
        if not (source / old.name).exists():
            old.unlink()
    for notebook in sorted(source.glob("*.ipynb")):
        destination = target / notebook.name
        # copy only when changed, so incremental builds stay incremental
        if not destination.exists() or destination.read_bytes() != notebook.read_bytes():
            shutil.copyfile(notebook, destination)


_copy_tutorials()

# -- extensions ----------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
HAS_TYPEHINTS = importlib.util.find_spec("sphinx_autodoc_typehints") is not None
if HAS_TYPEHINTS:
    # after napoleon, so that it sees the parameter lists napoleon produced
    extensions.append("sphinx_autodoc_typehints")

# .rst first: autosummary writes its stub pages with the first suffix, and they are rst
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# -- myst / myst-nb ------------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("SCGMVAE_DOCS_NB_EXECUTION", "off")
nb_execution_timeout = 600
nb_merge_streams = True

# -- autodoc / autosummary / napoleon ------------------------------------------------------

autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "groupwise"
# sphinx-autodoc-typehints moves the hints into the descriptions; without it, autodoc does
autodoc_typehints = "signature" if HAS_TYPEHINTS else "description"
autoclass_content = "class"

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
# The package's "Returns" sections are free text (no "type" line first, which numpydoc would
# expect), so render them as written instead of reading their first line as the type; the
# return type itself comes from the annotation (see also _strip_return_type_marker below).
napoleon_custom_sections = ["Returns"]

# sphinx-autodoc-typehints
always_document_param_types = False
typehints_defaults = "braces"
typehints_use_signature = False
typehints_use_signature_return = False

nitpicky = True
# names in the docstrings scvi-tools' models inherit that no inventory defines
nitpick_ignore_regex = [(r"py:.*", r"AnnOrMuData|mudata\..*")]

# A deprecation notice that sphinx-autodoc-typehints triggers in Sphinx itself (not ours to fix)
warnings.filterwarnings("ignore", message=".*_RstSnippetParser.set_application.*")

# -- intersphinx ---------------------------------------------------------------------------

OFFLINE = os.environ.get("SCGMVAE_DOCS_OFFLINE", "0").lower() not in ("", "0", "false", "no")

intersphinx_mapping = (
    {}
    if OFFLINE
    else {
        "python": ("https://docs.python.org/3", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
        "pooch": ("https://www.fatiando.org/pooch/latest/", None),
    }
)
intersphinx_timeout = 10
if OFFLINE:
    # without the inventories, references to other projects cannot resolve; references within
    # scgmvae are still checked
    EXTERNAL = (
        "anndata|scanpy|scvi|torch|numpy|pandas|matplotlib|pooch|lightning|collections|typing|os"
    )
    nitpick_ignore_regex.append((r"py:.*", rf"({EXTERNAL})(\..*)?"))

# -- HTML ----------------------------------------------------------------------------------

if importlib.util.find_spec("sphinx_book_theme") is not None:
    html_theme = "sphinx_book_theme"
    html_theme_options = {"navigation_with_keys": False}
else:
    html_theme = "alabaster"
html_title = "scgmvae"
html_static_path: list[str] = []


# -- roles of docstrings we inherit -------------------------------------------------------


def _citation_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """Render ``:cite:p:`key``` as ``[key]``.

    scvi-tools cites with sphinxcontrib-bibtex, whose bibliography we do not have; the
    inherited ``ArchesMixin.load_query_data`` docstring would otherwise fail the build.
    """
    from docutils import nodes

    return [nodes.Text(f"[{text}]")], []


def _strip_return_type_marker(app, what, name, obj, options, lines):
    """Drop the ":" line sphinx-autodoc-typehints puts under numpy "Returns" headers.

    The marker tells napoleon that the section has no type line, but with
    ``napoleon_custom_sections = ["Returns"]`` the section is free text and the marker would
    show up as a stray colon.
    """
    for i in range(len(lines) - 2):
        header, underline, marker = lines[i : i + 3]
        if (
            header.strip().lower().rstrip(":") in ("return", "returns")
            and underline.strip()
            and set(underline.strip()) <= set("=-~_*+#")
            and marker == ":"
        ):
            del lines[i + 2]
            return


def setup(app):
    # after sphinx-autodoc-typehints' marker (priority 499), before napoleon (500)
    app.connect("autodoc-process-docstring", _strip_return_type_marker, priority=499)
    if "sphinxcontrib.bibtex" in app.extensions:
        return
    from sphinx.domains import Domain

    class CitationDomain(Domain):
        """The ``cite`` roles of sphinxcontrib-bibtex, as plain text."""

        name = "cite"
        label = "Citations"
        roles = {"p": _citation_role, "t": _citation_role}  # noqa: RUF012

    app.add_domain(CitationDomain)
