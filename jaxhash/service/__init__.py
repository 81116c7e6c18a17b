"""The search service behind ``python -m jaxhash.serve``: an HTTP API and a web page over an index.

One module per job: ``catalog`` (the served index, its item ids, persisted changes), ``engine``
(the worker thread that batches concurrent searches), ``search_route`` (``POST /search``, the hot
path), ``app`` (the other routes, in FastAPI), ``uploads`` (images out of requests, decoded as
untrusted bytes), ``limits`` (the request body limit), ``stats``, ``errors`` (4xx answers),
``page/`` (the web page). Importing ``jaxhash`` never imports this package; it needs the ``serve``
extra.
"""
