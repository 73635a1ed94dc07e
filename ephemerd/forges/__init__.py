"""One sub-package per forge, each implementing ``ephemerd.capabilities.Provider``.

A forge never imports ``ephemerd.sandbox``: it only speaks to its forge and hands the
scheduler ``JobEvent``s and ``Claim``s.
"""
