"""`caitool view`: a local web page for caitool's outputs (data.py indexes files, server.py serves the page
and a JSON API, export.py writes one self-contained HTML file). The page itself is static data in static/.
"""
