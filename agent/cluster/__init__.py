"""Cluster mode (`SCISSOR_ENGINE=ray`): camera pipelines as Ray actors, the same API in front of them.

Nothing here is imported by the single-process service; Ray itself is imported only by the modules of this
package, and only when cluster mode runs (`pip install 'scissor-stream[ray]'`).
"""
