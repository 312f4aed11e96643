"""The HTTP service and the web page: the app, request batching, limits, access control, metrics, video.

The package is callable: ``affectlab.serve(model, ...)`` is ``affectlab.serve.app.serve`` (see ``affectlab.verbs``).
"""

from affectlab.verbs import callable_package

callable_package(__name__, "affectlab.serve.app:serve")
