"""The pure core: vocabulary, documents, validation, access rules and (later) matching.

Nothing here touches a database, the network or a third-party package, so that it can be
tested exhaustively and reused by the sync worker without the web stack.
"""
