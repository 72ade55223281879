"""The network as nta sees it: a graph of registered ops (``graph``) and the registry itself (``ops``)."""
