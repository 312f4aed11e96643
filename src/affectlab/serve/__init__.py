"""The HTTP service and the web page: the app, request batching, limits, access control, metrics, video."""
