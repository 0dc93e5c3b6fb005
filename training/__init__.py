"""The training engine: the tensor data path, the Lightning module, ``fit`` and the Pipes entry."""
