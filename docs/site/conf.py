# Sphinx configuration of the nestlab.pci documentation site, built by scripts/docs.sh:
# the modules' and roles' own documentation rendered by antsibull-docs, and the guides in docs/*.md.
project = "nestlab.pci"
copyright = "nestlab.pci contributors"
html_title = "nestlab.pci"
html_short_title = "nestlab.pci"

extensions = ["sphinx_antsibull_ext", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# scripts/docs.sh builds with -W -n: every cross-reference must resolve, a broken link is an error
myst_heading_anchors = 3

pygments_style = "ansible"
highlight_language = "YAML+Jinja"
html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False
