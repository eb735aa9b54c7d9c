"""Language models: the `offline` test/demo double (`offline`), the factory (`factory`), the
operator's allow-lists (`policy`) and provider error mapping (`errors`).

Import from the submodules: this package imports nothing itself, so the settings can use the
allow-lists without loading DSPy.
"""
