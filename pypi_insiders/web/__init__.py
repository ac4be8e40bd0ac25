"""Stage three: the WSGI app serving the generated index, the fallback upstream, and uploads."""
