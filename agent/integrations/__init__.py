"""The integration kinds that ship with rp-bts, one package each.

Each package's ``KIND`` is registered in the ``rp_bts.kinds`` entry-point group, exactly as a
third party's kind would be; nothing outside a package names it.
"""
