"""Configuration and user errors: hparams, overrides, and their checks.

``hparams_loading`` (a recipe YAML with overrides to hparams, with one-line
errors), ``overrides`` and ``override_types`` (command-line overrides),
``fold_check`` (the fold asked for exists), ``yaml_trust`` (what a model
folder's YAML may name) and ``user_errors`` (exception to one line and an
exit status).

Authors
 * amser-sb contributors
"""
